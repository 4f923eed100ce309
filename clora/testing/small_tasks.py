"""A user's own small tasks: support tickets, product reviews and news, plus an unseen domain.

What a new user brings: three classification tasks of a few dozen examples each, with
clearly different vocabulary, and later inputs of those same kinds. The sentences come
from templates with slot fillers (seeded), so any number of fresh inputs can be drawn;
``fresh`` inputs never repeat a training sentence. ``UNSEEN`` (cooking instructions) is a
fourth domain no task covers: a router should fall back on it.

Used by the routing test and ``examples/benchmarks/routing.py``; not the synthetic demo.
"""

from __future__ import annotations

import random

# task -> (label -> templates); {slot} names a filler list below
TEMPLATES = {
    "tickets": {
        "billing": ["I was charged twice for my {plan} subscription {when}, please refund the {amount} fee.",
                    "My invoice shows a {amount} charge {when} that I never authorised on my {plan} plan.",
                    "Why did my card get billed {amount} {when} after I cancelled the {plan} plan?",
                    "Please send me a corrected invoice, the {plan} renewal {when} cost {amount} instead of the quoted price."],
        "technical": ["The {app} crashes every time I open the {screen} screen {when}.",
                      "I cannot log in to the {app} {when}, it shows error code {code} on the {screen} page.",
                      "{When} the {app} freezes when I try to sync the {screen} data.",
                      "{When} the {app} keeps showing error {code} and the {screen} never loads."],
        "account": ["Please change the email address on my {plan} account to my new {provider} address, I am {person}.",
                    "I want to close my account and delete my {screen} data from the {app} {when}.",
                    "How do I reset the password for my {app} account, the reset link to my {provider} mail never arrived {when}?",
                    "Please add a second user to my {plan} account, my colleague {person} uses a {provider} address."],
    },
    "reviews": {
        "positive": ["This {product} is fantastic, the {feature} works perfectly and it arrived {speed}.",
                     "Absolutely love the {product} I bought {when}; great {feature} and worth every penny.",
                     "Five stars: the {product} exceeded my expectations, especially the {feature}.",
                     "Best {product} I have bought in years, the {feature} is superb and it came {speed}."],
        "negative": ["The {product} broke after a week and the {feature} never worked properly.",
                     "Terrible {product}, the {feature} is flimsy and it arrived {speed} but damaged.",
                     "One star: the {product} is a waste of money, the {feature} stopped working {when}.",
                     "Very disappointed with this {product} I got {when}, the {feature} feels cheap."],
    },
    "news": {
        "sports": ["The {team} beat their rivals {score} in the {competition} final on {day}.",
                   "Star striker of the {team} ruled out of the {competition} with a knee injury, {person} to replace him.",
                   "The {team} coach {person} praised the defence after a {score} win in the {competition}.",
                   "Fans celebrated as the {team} clinched the {competition} title with a {score} victory."],
        "politics": ["The {body} passed the new {policy} bill after a long debate on {day}.",
                     "Opposition leader {person} criticised the government's {policy} plan in the {body}.",
                     "The prime minister announced a reform of {policy} ahead of the {body} vote on {day}.",
                     "Lawmakers in the {body} delayed the vote on the {policy} package until {day}."],
        "business": ["Shares of {company} rose {percent} on {day} after quarterly profits beat forecasts.",
                     "{company} chief {person} announced it will cut {percent} of its workforce amid falling sales.",
                     "The central bank held interest rates on {day} as {company} warned of weaker demand.",
                     "{company} agreed to buy a smaller rival on {day}, sending its stock up {percent}."],
    },
}
UNSEEN = ["Whisk the {ingredient} with sugar until pale, then fold in the {other} gently.",
          "Preheat the oven, then roast the {ingredient} with garlic for {minutes} minutes.",
          "Simmer the {ingredient} in stock for {minutes} minutes and season with {other}.",
          "Knead the dough with {ingredient} for {minutes} minutes before letting it rise.",
          "Fry the onions until golden, add the {ingredient} and a pinch of {other}.",
          "Chop the {ingredient} finely and marinate it with {other} overnight."]
FILLERS = {
    "plan": ["premium", "family", "business", "annual", "student", "basic"],
    "amount": ["$12", "$49.99", "$8", "$120", "$30", "$15.50"],
    "app": ["mobile app", "desktop client", "web dashboard", "tablet app", "browser extension"],
    "screen": ["settings", "billing history", "profile", "notifications", "reports", "calendar"],
    "code": ["403", "500", "E-17", "0x80", "timeout-9", "502"],
    "provider": ["gmail", "outlook", "yahoo", "company", "proton"],
    "product": ["blender", "vacuum cleaner", "backpack", "headphones", "coffee maker", "desk lamp", "running shoes"],
    "feature": ["battery", "zipper", "sound quality", "motor", "handle", "build quality", "cushioning"],
    "speed": ["quickly", "two days early", "on time", "late"],
    "team": ["City", "United", "Rovers", "Lions", "Wanderers", "Athletic"],
    "score": ["2-1", "3-0", "1-0", "4-2", "2-2"],
    "competition": ["league cup", "champions league", "national championship", "premier league"],
    "body": ["senate", "parliament", "assembly", "congress"],
    "policy": ["healthcare", "immigration", "tax", "climate", "education", "pension"],
    "company": ["Acme Corp", "Globex", "Initech", "Umbrella Group", "Stark Industries", "Wayne Enterprises"],
    "percent": ["5%", "12%", "3%", "8%", "20%"],
    "ingredient": ["butter", "eggs", "chicken thighs", "carrots", "lentils", "flour", "salmon", "mushrooms"],
    "other": ["cream", "paprika", "thyme", "lemon zest", "cinnamon", "cumin"],
    "minutes": ["10", "20", "35", "45", "15"],
    "when": ["this month", "last week", "on Monday", "this morning", "twice already", "since the update",
             "again today"],
    "When": ["Since yesterday", "Since the update", "Every morning", "Since last week", "Today"],
    "day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "person": ["Maria Lopez", "John Smith", "Aiko Tanaka", "Peter Novak", "Fatima Khan", "Luca Rossi"],
}
TASKS = tuple(TEMPLATES)


def _fill(template: str, rng: random.Random) -> str:
    out = template
    for slot, values in FILLERS.items():
        while "{" + slot + "}" in out:
            out = out.replace("{" + slot + "}", rng.choice(values), 1)
    return out


def _draw(templates: dict[str, list[str]], n: int, rng: random.Random, avoid: set[str]) -> list[dict]:
    rows, labels, tries = [], sorted(templates), 0
    while len(rows) < n and tries < 100 * n:
        tries += 1
        label = labels[len(rows) % len(labels)]
        text = _fill(rng.choice(templates[label]), rng)
        if text not in avoid:
            avoid.add(text)
            rows.append({"sentence": text, "label": label})
    return rows


def small_task(task: str, n_train: int = 60, n_fresh: int = 40, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """``(train, fresh)`` rows ``{"sentence", "label"}`` of ``task``; no fresh sentence is a training one."""
    rng, seen = random.Random(f"{task}-{seed}"), set()
    fresh = _draw(TEMPLATES[task], n_fresh, rng, seen)  # first, so a large training draw cannot starve it
    return _draw(TEMPLATES[task], n_train, rng, seen), fresh


def unseen_inputs(n: int = 40, seed: int = 0) -> list[str]:
    """Inputs of a domain none of the tasks covers (cooking instructions)."""
    return [r["sentence"] for r in _draw({"recipe": UNSEEN}, n, random.Random(f"unseen-{seed}"), set())]
