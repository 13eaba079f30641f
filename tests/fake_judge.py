"""A fake LLM/VLM for the local test server (``JudgeServer.state.responder``): answers each of the project's
English prompts (utility, make-qa, balanced, toy extraction) by simple rules the tests can predict, in the answer
forms the prompts ask for. It reads the prompts' delimited blocks (``prompts.Delimited``) as a model would."""

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


def block(prompt, label):
    """The text of the prompt's ``<label-N>`` ... ``</label-N>`` block, or None."""
    match = re.search(rf"^<{label}-([0-9a-f]{{16}})>\n(.*?)\n</{label}-\1>$", prompt, re.S | re.M)
    return match.group(2) if match else None


def _options(question):
    return dict(re.findall(r"^([A-Z])\. (.+)$", question, re.M))


def fake_model(messages):
    """A model that answers each of the project's prompts in a rule-based way the tests can predict."""
    prompt = _text(messages)
    if "Reply with the letter" in prompt:  # utility_answer (en)
        options = _options(block(prompt, "question"))
        if _has_image(messages):  # the VLM sees the image: it knows the truth (first toy name of the record)
            truth = next(o for o in options.values() if o.startswith("TRUE:"))
            return next(k for k, v in options.items() if v == truth)
        caption = block(prompt, "description")
        for letter, option in options.items():  # an option named in the caption wins
            if caption is not None and option.removeprefix("TRUE:") in caption:
                return f"Answer: {letter}"
        return "A" if caption is None else "I cannot tell."
    if (references := block(prompt, "reference-assertions")) is not None:
        # recall: against the caption's assertions, never the raw caption
        caption = block(prompt, "caption-assertions")
        claims = re.findall(r"^\d+\. (.+)$", references, re.M)
        return json.dumps({"covered": [c.rstrip(".").split()[-1] in caption for c in claims]})
    if "into atomic assertions" in prompt:
        text = block(prompt, "description")
        assertions = [s.strip() + "." for s in re.split(r"[.。;；]", text) if s.strip()]
        return json.dumps({"assertions": assertions}, ensure_ascii=False)
    if '"pointable": true if' in prompt:
        claims = re.findall(r"^\d+\. (.+)$", block(prompt, "assertions"), re.M)
        return json.dumps({"verdicts": [{"verified": "happy" not in c, "pointable": "look" not in c} for c in claims]})
    if '"clarity" (precise' in prompt:
        return '{"clarity": 5, "fluency": 4, "coherence": 3}'
    if "List the names of all toys" in prompt:  # toy_extract: the names after "with"
        match = re.search(r"with ([^.]+)", block(prompt, "caption"))
        return json.dumps({"toys": [n.strip() for n in re.split(r",| and ", match.group(1))] if match else []})
    if "writing a quiz" in prompt:
        questions = [
            {"question": "Which toy?", "options": ["TRUE:drum", "bell", "kite", "doll"], "answer": "A"},
            {"question": "Leaky?", "options": ["TRUE:leak", "b", "c", "d"], "answer": "A"},
        ]
        return json.dumps({"questions": questions})
    return None
