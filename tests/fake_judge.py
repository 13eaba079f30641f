"""A fake LLM/VLM for the local test server (``JudgeServer.state.responder``): answers each of the project's
English prompts (utility, make-qa, balanced) by simple rules the tests can predict."""

import json
import re


def _text(messages):
    parts = []
    for m in messages:
        content = m["content"]
        parts.append(content if isinstance(content, str) else " ".join(p.get("text", "") for p in content))
    return "\n".join(parts)


def _has_image(messages):
    return any(isinstance(m["content"], list) and any(p["type"] == "image_url" for p in m["content"]) for m in messages)


def _options(prompt):
    return dict(re.findall(r"^([A-Z])\. (.+)$", prompt, re.M))


def fake_model(messages):
    """A model that answers each of the project's prompts in a rule-based way the tests can predict."""
    prompt = _text(messages)
    if "Reply with the letter" in prompt:  # utility_answer (en)
        options = _options(prompt)
        if _has_image(messages):  # the VLM sees the image: it knows the truth (first toy name of the record)
            truth = next(o for o in options.values() if o.startswith("TRUE:"))
            return next(k for k, v in options.items() if v == truth)
        caption = prompt.split("Description:", 1)[1].split("Question:", 1)[0] if "Description:" in prompt else ""
        for letter, option in options.items():  # an option named in the caption wins
            if option.removeprefix("TRUE:") in caption:
                return f"Answer: {letter}"
        return "A" if "Description:" not in prompt else "I cannot tell."
    if "Reference assertions" in prompt:  # recall: against the caption's assertions, never the raw caption
        caption = prompt.split("Caption assertions:", 1)[1].split("Reference assertions:", 1)[0]
        claims = re.findall(r"^\d+\. (.+)$", prompt.split("Reference assertions:", 1)[1], re.M)
        return json.dumps([c.rstrip(".").split()[-1] in caption for c in claims])
    if "atomic assertions" in prompt:
        text = prompt.split("Description:", 1)[1]
        return json.dumps([s.strip() + "." for s in re.split(r"[.。;；]", text) if s.strip()], ensure_ascii=False)
    if "pointable" in prompt:
        claims = re.findall(r"^\d+\. (.+)$", prompt, re.M)
        return json.dumps([{"verified": "happy" not in c, "pointable": "look" not in c} for c in claims])
    if '"clarity"' in prompt:
        return '{"clarity": 5, "fluency": "4", "coherence": 3}'
    if "toys and teaching aids mentioned" in prompt:  # toy_extract: the names after "with"
        caption = prompt.rsplit("Caption:", 1)[-1]
        match = re.search(r"with ([^.]+)", caption)
        return json.dumps([n.strip() for n in re.split(r",| and ", match.group(1))] if match else [])
    if "quiz" in prompt:
        return json.dumps(
            [
                {"question": "Which toy?", "options": ["TRUE:drum", "bell", "kite", "doll"], "answer": "A"},
                {"question": "Leaky?", "options": ["TRUE:leak", "b", "c", "d"], "answer": "A"},
            ]
        )
    return None
