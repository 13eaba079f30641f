"""Regenerate the bundled ECAC *sample* (synthetic drawings, made-up captions; no real photos, no real children).

    python tools/make_sample.py

Writes ecac_bench/sample/{ecac_sample.jsonl, images/*.png, predictions/system-{a,b}.jsonl}. Deterministic (seeded).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).resolve().parents[1] / "ecac_bench" / "sample"

# (name, level, aliases, english gloss for the drawing, generic low-precision word a weak system would use)
ZH_TOYS = {
    "美工区": [
        ("彩泥", "medium", ["橡皮泥"], "clay", "泥"),
        ("水彩笔", "medium", [], "markers", "笔"),
        ("剪刀", "low", [], "scissors", "剪刀"),
        ("画纸", "low", ["白纸"], "paper", "纸"),
    ],
    "建构区": [
        ("单元积木", "medium", ["原木积木"], "unit blocks", "积木"),
        ("积木", "low", [], "blocks", "积木"),
        ("磁力片", "medium", ["磁性拼板"], "magnetic tiles", "片"),
        ("乐高得宝", "high", ["得宝大颗粒积木"], "duplo", "积木"),
    ],
    "科学区": [
        ("放大镜", "medium", [], "magnifier", "镜子"),
        ("天平", "medium", ["平衡秤"], "balance", "秤"),
        ("磁铁", "low", [], "magnet", "磁铁"),
        ("沉浮实验箱", "high", [], "float/sink kit", "箱子"),
    ],
    "阅读区": [
        ("绘本", "medium", ["图画书"], "picture book", "书"),
        ("书", "low", ["书本"], "book", "书"),
        ("手偶", "medium", ["指偶"], "hand puppet", "玩偶"),
    ],
    "户外沙水区": [
        ("沙铲", "medium", ["小铲子"], "sand shovel", "铲子"),
        ("沙子", "low", ["沙"], "sand", "沙子"),
        ("水车玩具", "high", ["沙水车"], "water wheel", "玩具"),
    ],
    "户外运动区": [
        ("滑梯", "low", [], "slide", "滑梯"),
        ("平衡木", "medium", [], "balance beam", "木头"),
        ("轮胎", "low", [], "tyres", "轮胎"),
        ("攀爬架", "medium", ["攀登架"], "climbing frame", "架子"),
    ],
    "蒙氏教室": [
        ("蒙氏粉红塔", "high", ["粉红塔"], "pink tower", "积木"),
        ("蒙氏数棒", "high", ["数棒"], "number rods", "棒子"),
        ("几何嵌板", "high", [], "geometric insets", "板子"),
        ("托盘", "low", [], "tray", "盘子"),
    ],
    "音乐室": [
        ("奥尔夫木琴", "high", ["木琴"], "xylophone", "琴"),
        ("手鼓", "medium", [], "hand drum", "鼓"),
        ("沙锤", "medium", ["沙球"], "maracas", "乐器"),
    ],
}
EN_TOYS = {
    "block area": [
        ("unit blocks", "medium", [], "unit blocks", "blocks"),
        ("blocks", "low", [], "blocks", "blocks"),
        ("magnetic tiles", "medium", ["magna-tiles"], "magnetic tiles", "tiles"),
        ("Lego Duplo", "high", ["duplo"], "duplo", "bricks"),
    ],
    "art area": [
        ("play dough", "medium", ["playdough", "plasticine"], "play dough", "dough"),
        ("crayons", "low", ["crayon"], "crayons", "pens"),
        ("paper", "low", [], "paper", "paper"),
    ],
    "sand and water area": [
        ("sand", "low", [], "sand", "sand"),
        ("water table", "medium", [], "water table", "table"),
        ("car", "low", ["toy car"], "car", "toy"),
    ],
    "Montessori room": [
        ("Montessori pink tower", "high", ["pink tower"], "pink tower", "blocks"),
        ("Montessori brown stair", "high", ["brown stair"], "brown stair", "blocks"),
        ("number rods", "high", [], "number rods", "sticks"),
    ],
    "music room": [
        ("Orff xylophone", "high", ["xylophone"], "xylophone", "instrument"),
        ("tambourine", "medium", [], "tambourine", "instrument"),
        ("drum", "low", [], "drum", "drum"),
    ],
}
CATEGORY_OF = {
    "美工区": "classroom",
    "建构区": "classroom",
    "科学区": "classroom",
    "阅读区": "classroom",
    "户外沙水区": "outdoor",
    "户外运动区": "outdoor",
    "蒙氏教室": "specialty",
    "音乐室": "specialty",
    "block area": "classroom",
    "art area": "classroom",
    "sand and water area": "outdoor",
    "Montessori room": "specialty",
    "music room": "specialty",
}
ZH_ACTIONS = ["专注地", "开心地", "认真地", "兴奋地"]
EN_ACTIONS = ["carefully", "happily", "eagerly", "quietly"]
COLORS = {"outdoor": (200, 230, 190), "classroom": (245, 235, 210), "specialty": (215, 220, 245)}
SHAPE_COLORS = [(220, 80, 80), (80, 140, 220), (240, 190, 60), (120, 190, 120), (170, 110, 200)]


def _zh_caption(area: str, toys: list[tuple], rng: random.Random) -> str:
    fg = "、".join(t[0] for t in toys if t[5] == "foreground")
    bg = "、".join(t[0] for t in toys if t[5] == "background")
    text = f"在{area}，几名幼儿{rng.choice(ZH_ACTIONS)}活动"
    if fg:
        text += f"，他们正在使用{fg}进行探索，表情专注"
    if bg:
        text += f"；背景中可以看到{bg}"
    return text + "。教师在一旁观察并适时引导。"


def _en_caption(area: str, toys: list[tuple], rng: random.Random) -> str:
    fg = ", ".join(t[0] for t in toys if t[5] == "foreground")
    bg = ", ".join(t[0] for t in toys if t[5] == "background")
    text = f"In the {area}, a small group of children play {rng.choice(EN_ACTIONS)}"
    if fg:
        text += f", working with the {fg}"
    if bg:
        text += f"; in the background there are {bg}"
    return text + ". A teacher observes and supports their exploration."


def _draw(path: Path, rid: str, category: str, toys: list[tuple], rng: random.Random) -> None:
    img = Image.new("RGB", (320, 240), COLORS[category])
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=12)
    for i, toy in enumerate(toys):
        x, y = 20 + (i % 3) * 100, 60 + (i // 3) * 80
        color = SHAPE_COLORS[i % len(SHAPE_COLORS)]
        size = 50 if toy[5] == "foreground" else 30
        if i % 2:
            draw.ellipse([x, y, x + size, y + size], fill=color, outline=(40, 40, 40))
        else:
            draw.rectangle([x, y, x + size, y + size], fill=color, outline=(40, 40, 40))
        draw.text((x, y + size + 2), toy[3], fill=(30, 30, 30), font=font)
    for k in range(rng.randint(1, 3)):  # abstract figures: a circle and a line, nobody real
        cx = 40 + k * 110 + rng.randint(0, 20)
        draw.ellipse([cx, 185, cx + 16, 201], outline=(60, 60, 60), width=2)
        draw.line([cx + 8, 201, cx + 8, 228], fill=(60, 60, 60), width=2)
    draw.rectangle([0, 0, 320, 22], fill=(30, 30, 30))
    draw.text((6, 5), f"ECAC SAMPLE (synthetic drawing) {rid}", fill=(255, 255, 255), font=font)
    img.save(path, optimize=True)


def _mention(toy: tuple, rng: random.Random) -> str:
    names = [toy[0], *toy[2]]
    return rng.choice(names)


def _predict(area: str, toys: list[tuple], zh: bool, rates: dict[str, float], generic: bool, rng: random.Random) -> str:
    said = []
    for toy in toys:
        if rng.random() < rates[toy[1]]:
            said.append(_mention(toy, rng))
        elif generic and rng.random() < 0.5:
            said.append(toy[4])
    said = list(dict.fromkeys(said))
    if zh:
        body = "、".join(said) if said else "一些玩具"
        return f"孩子们在{area}里玩{body}，看起来很开心。"
    body = ", ".join(said) if said else "some toys"
    return f"Children are playing with {body} in the {area}. They look happy."


def main() -> None:
    rng = random.Random(20261125)
    (OUT / "images").mkdir(parents=True, exist_ok=True)
    (OUT / "predictions").mkdir(parents=True, exist_ok=True)
    areas = list(ZH_TOYS) + list(EN_TOYS)
    records, pred_a, pred_b = [], [], []
    for i in range(60):
        area = areas[i % len(areas)]
        zh = area in ZH_TOYS
        pool = (ZH_TOYS if zh else EN_TOYS)[area]
        k = 0 if i % 17 == 5 else rng.randint(1, len(pool))
        chosen = rng.sample(pool, k)
        toys = [(*t, "foreground" if rng.random() < 0.6 else "background") for t in chosen]
        rid = f"ecac-sample-{i + 1:04d}"
        category = CATEGORY_OF[area]
        image = f"images/{rid}.png"
        _draw(OUT / image, rid, category, toys, rng)
        caption = _zh_caption(area, toys, rng) if zh else _en_caption(area, toys, rng)
        toy_rows = []
        for name, level, aliases, _gloss, _generic, ground in toys:
            row = {"name": name, "level": level, "ground": ground}
            if aliases:
                row["aliases"] = aliases
            toy_rows.append(row)
        records.append(
            {
                "id": rid,
                "image": image,
                "category": category,
                "area": area,
                "caption": caption,
                "split": "train" if i % 3 == 2 else "test",
                "toys": toy_rows,
            }
        )
        pred_a.append(
            {"id": rid, "caption": _predict(area, toys, zh, {"low": 0.9, "medium": 0.6, "high": 0.35}, False, rng)}
        )
        weak = {"low": 0.6, "medium": 0.2, "high": 0.05}
        if i % 4 == 0:  # some rows with several captions, to exercise that form
            pred_b.append({"id": rid, "captions": [_predict(area, toys, zh, weak, True, rng) for _ in range(2)]})
        else:
            pred_b.append({"id": rid, "caption": _predict(area, toys, zh, weak, True, rng)})
    for name, rows in (
        ("ecac_sample.jsonl", records),
        ("predictions/system-a.jsonl", pred_a),
        ("predictions/system-b.jsonl", pred_b),
    ):
        with (OUT / name).open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(records)} records to {OUT}")


if __name__ == "__main__":
    main()
