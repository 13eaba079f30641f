"""`ecac-bench utility`, `balanced` and `make-qa` end to end: real CLI, real client, the local OpenAI-compatible
server answering as a fake (deterministic) LLM/VLM."""

import json
import re

import pytest
from fake_judge import block, fake_model
from judge_server import JudgeServer

from ecac_bench import SAMPLE_DATA, load_dataset
from ecac_bench.balanced import harmonic_mean
from ecac_bench.cli import main
from ecac_bench.utility import QAItem, shuffle_rounds

KEY = "sk-sibling-test-key-never-written"
DATASET = load_dataset(SAMPLE_DATA, split="test")
RECORDS = DATASET.records[:3]
ENGLISH = next(r for r in DATASET if r.caption.isascii() and r.toys)


@pytest.fixture
def env(monkeypatch):
    with JudgeServer(api_key=KEY) as server:
        server.state.responder = fake_model
        monkeypatch.setenv("ECAC_JUDGE_BASE_URL", server.base_url)
        monkeypatch.setenv("ECAC_JUDGE_API_KEY", KEY)
        monkeypatch.setenv("ECAC_JUDGE_MODEL", "fake")
        yield server


def test_utility_end_to_end_with_cache(env, tmp_path):
    questions = tmp_path / "q.jsonl"
    rows = [
        {"id": RECORDS[0].id, "question": "Which toy?", "options": ["TRUE:drum", "bell", "kite"], "answer": "A"},
        {"id": RECORDS[0].id, "question": "Which?", "options": ["x", "TRUE:bell"], "answer": "B"},
        {"id": RECORDS[1].id, "question": "Which toy?", "options": ["TRUE:kite", "drum"], "answer": "A"},
        # RECORDS[2]'s caption is a failed generation (empty): its question is never asked, never scored 0
        {"id": RECORDS[2].id, "question": "Which toy?", "options": ["TRUE:ball", "drum"], "answer": "A"},
    ]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    preds = tmp_path / "p.jsonl"
    captions = {RECORDS[0].id: "A child plays the drum.", RECORDS[1].id: "Children fly a kite.", RECORDS[2].id: ""}
    preds.write_text("".join(json.dumps({"id": i, "caption": c}) + "\n" for i, c in captions.items()))
    out = tmp_path / "u.json"
    argv = [
        "utility",
        "--data",
        str(SAMPLE_DATA),
        "--split",
        "test",
        "--questions",
        str(questions),
        "--predictions",
        str(preds),
        "--allow-missing",
        "--lang",
        "en",
        "--rounds",
        "3",
        "--allow-failed",
        "1",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
        "--json",
        str(out),
    ]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    m = report["metrics"]
    # image 0: q0 always right (drum named), q1 always wrong (bell not named) -> 50; image 1: kite named -> 100
    assert report["per_image"] == {RECORDS[0].id: 50.0, RECORDS[1].id: 100.0}
    assert m["utility"] == pytest.approx(75.0) and m["utility_micro"] == pytest.approx(100 * 6 / 9)
    assert (m["n_rounds"], m["n_failed"], m["n_unparsed"]) == (9, 0, 3)
    assert 0 < env.state.requests <= 9  # rounds whose shuffles coincide are one request (the client dedupes)
    env.state.reset()
    assert main(argv) == 0  # a re-run is served from the cache
    assert env.state.requests == 0 and json.loads(out.read_text())["metrics"] == m
    assert KEY not in out.read_text()


def test_balanced_end_to_end(env, tmp_path):
    preds = tmp_path / "p.jsonl"
    caption = "Children play with play dough. They look happy. A teacher helps."
    preds.write_text(json.dumps({"id": ENGLISH.id, "caption": caption}) + "\n")
    out = tmp_path / "b.json"
    argv = [
        "balanced",
        "--data",
        str(SAMPLE_DATA),
        "--split",
        "test",
        "--predictions",
        str(preds),
        "--allow-missing",
        "--lang",
        "en",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
        "--json",
        str(out),
    ]
    assert main(argv) == 0
    m = json.loads(out.read_text())["metrics"]
    # 3 assertions; "They look happy." is neither verified nor pointable -> precision 2/3
    reference = [s for s in re.split(r"[.。;；]", ENGLISH.caption) if s.strip()]
    recall = sum(s.strip().split()[-1] in caption for s in reference) / len(reference)
    assert 0 < recall < 1  # the fixture is informative: some reference assertions covered, some not
    linguistic = (1 + 0.75 + 0.5) / 3
    assert m["balanced_precision"] == pytest.approx(100 * 2 / 3)
    assert m["balanced_recall"] == pytest.approx(100 * recall)
    assert m["linguistic"] == pytest.approx(100 * linguistic)
    assert m["b_capscore"] == pytest.approx(100 * harmonic_mean([2 / 3, recall, linguistic]))
    assert (m["n"], m["n_failed"]) == (1, 0)
    assert env.state.requests == 5  # decompose caption + reference, verify, recall, linguistic


def test_balanced_counts_failures_not_zeros(env, tmp_path):
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": RECORDS[0].id, "caption": "Kids play. @@500x99"}) + "\n")
    out = tmp_path / "b.json"
    argv = [
        "balanced",
        "--data",
        str(SAMPLE_DATA),
        "--split",
        "test",
        "--predictions",
        str(preds),
        "--allow-missing",
        "--lang",
        "en",
        "--no-cache",
        "--no-progress",
        "--max-retries",
        "1",
        "--json",
        str(out),
    ]
    assert main(argv) == 1  # nothing could be scored
    report = json.loads(out.read_text()) if out.exists() else None
    assert report is None or report["metrics"]["n_failed"] == 1


def test_make_qa_filters_leaky_questions(env, tmp_path):
    out = tmp_path / "qa.jsonl"
    data = tmp_path / "d.jsonl"
    data.write_text("".join(line for line in SAMPLE_DATA.read_text().splitlines(keepends=True)[:2]))
    (tmp_path / "images").symlink_to(SAMPLE_DATA.parent / "images")
    argv = [
        "make-qa",
        "--data",
        str(data),
        "--out",
        str(out),
        "--per-image",
        "2",
        "--rounds",
        "2",
        "--lang",
        "en",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
    ]
    assert main(argv) == 0
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    # The VLM (with the image) is always right; the blind LLM always answers "A", so a question survives the
    # leak filter (blind accuracy <= 0.25) only when its correct option was never shuffled to A.
    generated = [
        QAItem(json.loads(x)["id"], q, ("TRUE:" + t, *rest), 0)
        for x in data.read_text().splitlines()
        for q, t, rest in (("Which toy?", "drum", ("bell", "kite", "doll")), ("Leaky?", "leak", ("b", "c", "d")))
    ]
    rounds = shuffle_rounds(generated, rounds=2, seed=0, lang="en")
    expected = [
        item.to_dict()
        for qi, item in enumerate(generated)
        if all(r.correct != 0 for r in rounds if r.question_index == qi)
    ]
    assert kept == expected and len(expected) < len(generated)


def test_make_qa_no_filter_keeps_everything(env, tmp_path):
    out = tmp_path / "qa.jsonl"
    data = tmp_path / "d.jsonl"
    data.write_text("".join(SAMPLE_DATA.read_text().splitlines(keepends=True)[:2]))
    (tmp_path / "images").symlink_to(SAMPLE_DATA.parent / "images")
    argv = ["make-qa", "--data", str(data), "--out", str(out), "--per-image", "2", "--no-filter", "--lang", "en",
            "--no-cache", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert len(out.read_text().splitlines()) == 4  # 2 questions x 2 images
    assert env.state.requests == 2  # generation only, no filter rounds


def _balanced_argv(tmp_path, caption):
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": ENGLISH.id, "caption": caption}) + "\n")
    out = tmp_path / "b.json"
    argv = ["balanced", "--data", str(SAMPLE_DATA), "--split", "test", "--predictions", str(preds), "--allow-missing",
            "--lang", "en", "--no-cache", "--no-progress", "--json", str(out)]  # fmt: skip
    return argv, out


def test_balanced_recall_compares_assertions_with_assertions(env, tmp_path):
    """BalCapRL's recall asks about the generated caption's atomic assertions, never the raw caption."""
    env.state.keep_bodies = True
    caption = "Children play with play dough. They look happy. A teacher helps."
    argv, _ = _balanced_argv(tmp_path, caption)
    assert main(argv) == 0

    def text(body):
        contents = [m["content"] for m in body["messages"]]
        return "\n".join(c if isinstance(c, str) else " ".join(p.get("text", "") for p in c) for c in contents)

    (recall,) = [text(b) for b in env.state.bodies if block(text(b), "reference-assertions") is not None]
    listed = block(recall, "caption-assertions")
    assert listed == "1. Children play with play dough.\n2. They look happy.\n3. A teacher helps."
    assert caption not in recall and "or can reasonably be inferred from, the generated caption" in " ".join(
        recall.split()
    )


def test_balanced_caption_without_assertions_covers_nothing(env, tmp_path):
    argv, out = _balanced_argv(tmp_path, "...")  # the fake decomposes it into no assertion
    assert main(argv) == 0
    m = json.loads(out.read_text())["metrics"]
    assert (m["balanced_precision"], m["balanced_recall"], m["b_capscore"], m["n"]) == (0.0, 0.0, 0.0, 1)
    assert env.state.requests == 3  # two decompositions and the linguistic rating: no recall call to make
