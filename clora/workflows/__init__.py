"""Jobs that combine the layers below: run a stream, add a task, compare methods, open a library's model."""
