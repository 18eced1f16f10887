"""Raw corpora: TFDS builders, deterministic splits, skip accounting, bad input."""

import pathlib

import pytest
import tensorflow_datasets as tfds

from tinylm_jax.config.data import DataConfig
from tinylm_jax.data import corpus
from tinylm_jax.errors import DataError


class TinylmTestCatalog(tfds.core.GeneratorBasedBuilder):
    """Stands in for a TFDS catalog dataset (lm1b, ...) without network."""

    VERSION = tfds.core.Version("1.0.0")

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return None  # No checksums file; avoids TFDS's optional importlib_resources import.

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.FeaturesDict({"sentence": tfds.features.Text()})
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(10), "test": self._generate_examples(3)}

    def _generate_examples(self, n):
        for i in range(n):
            yield i, {"sentence": f"sentence number {i}"}


def test_tfds_catalog_dataset_by_name(tmp_path):
    tfds_dir = tmp_path / "tfds"
    TinylmTestCatalog(data_dir=str(tfds_dir), file_format="array_record").download_and_prepare()
    config = DataConfig(
        dataset="tinylm_test_catalog", text_key="sentence", tfds_data_dir=str(tfds_dir)
    )
    raw = corpus.load_raw_corpus(config, tmp_path / "data")
    assert (len(raw.splits["train"]), len(raw.splits["validation"])) == (10, 3)
    texts = [t for t, _ in corpus.iter_texts(raw.splits["train"], raw.text_key)]
    assert sorted(texts) == sorted(f"sentence number {i}" for i in range(10))
    with pytest.raises(DataError, match="text_key"):
        corpus.load_raw_corpus(
            DataConfig(dataset="tinylm_test_catalog", tfds_data_dir=str(tfds_dir)), tmp_path
        )
    with pytest.raises(DataError, match="not prepared"):
        corpus.load_raw_corpus(
            DataConfig(
                dataset="tinylm_test_catalog",
                text_key="sentence",
                tfds_data_dir=str(pathlib.Path(tmp_path / "empty")),
            ),
            tmp_path,
        )
