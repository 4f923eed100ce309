"""Shipped stream definitions (YAML), installed as package data of clora.streams."""
