"""A user model's text in a delta's tokenization: the decoding rule (mapped token or
re-encoding) and the text-offset alignment of teacher-forced rows, on a SentencePiece and a
byte-level BPE trained on the same standard-library text."""

import numpy as np
import pytest

from tests.support.cmc import cross_tokenizers, packed_batch, stdlib_texts
from tinylm_jax.data.cross_vocab import (
    CrossVocab,
    align_row,
    align_segment,
    extend_delta_ids,
    first_change,
    prompt_delta_ids,
    stack_rows,
)
from tinylm_jax.data.token_map import EXACT, PREFIX, build_map
from tinylm_jax.data.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    sentencepiece, bpe = cross_tokenizers(tmp_path_factory.mktemp("tokenizers"))
    return load_tokenizer(sentencepiece), load_tokenizer(bpe)


def text_of(tokenizer, ids) -> bytes:
    return b"".join(tokenizer.pieces[i][1] for i in ids)


def test_first_change():
    assert first_change([1, 2, 3], [1, 2, 4, 5]) == 2
    assert first_change([1, 2], [1, 2, 3]) == 2
    assert first_change([1, 2, 3], [1, 2]) == 2
    assert first_change([], [7]) == 0


def test_decoding_appends_an_exact_match_and_re_encodes_otherwise(tokenizers):
    user, delta = tokenizers
    cross = CrossVocab(user, delta, build_map(user, delta))
    kinds = np.asarray(cross.token_map.match_V)
    start = prompt_delta_ids(cross, "def f(x):\n")
    assert start == [delta.bos_id, *delta.encode("def f(x):\n")]
    exact = int(np.flatnonzero(kinds == EXACT)[-1])
    text = b"def f(x):\n" + user.pieces[exact][1]
    assert extend_delta_ids(cross, start, exact, text) == [*start, cross.token_map.map_V[exact]]
    prefix = int(np.flatnonzero(kinds == PREFIX)[0])
    text = b"def f(x):\n" + user.pieces[prefix][1]
    expected = [delta.bos_id, *delta.encode(text.decode())]
    assert extend_delta_ids(cross, start, prefix, text) == expected


def test_identical_tokenizers_align_one_to_one(tokenizers):
    for tokenizer in tokenizers:  # byte pieces and one-byte tokens share bytes, not kinds
        identity = build_map(tokenizer, tokenizer).map_V
        np.testing.assert_array_equal(identity, np.arange(tokenizer.vocab_size))
    user, _ = tokenizers
    cross = CrossVocab(user, user, build_map(user, user))
    batch = packed_batch(user, stdlib_texts(), rows=4, seq_len=48)
    for inputs, segments in zip(batch["inputs"], batch["segment_ids"], strict=True):
        row = align_row(cross, inputs, segments)
        real = segments > 0
        assert row.tokens == inputs[real].tolist()
        assert row.segment_ids == segments[real].tolist()
        np.testing.assert_array_equal(row.index_L, np.where(real, np.arange(len(inputs)), -1))


def test_each_aligned_position_has_read_the_same_text(tokenizers):
    """The definition: user position j is shifted by delta position k exactly when the delta's
    prefix through k decodes to the user's prefix through j (within a document piece)."""
    user, delta = tokenizers
    cross = CrossVocab(user, delta, build_map(user, delta))
    matched = unmatched = 0
    for text in stdlib_texts()[:12]:
        user_ids = [user.bos_id, *user.encode(text), user.eos_id]
        delta_ids, index = align_segment(cross, user_ids)
        assert delta_ids == [delta.bos_id, *delta.encode(text), delta.eos_id]
        delta_ends = {len(text_of(delta, delta_ids[: k + 1])): k for k in range(len(delta_ids) - 1)}
        for j in range(1, len(user_ids) - 1):  # text tokens (BOS and EOS map one to one)
            end = len(text_of(user, user_ids[: j + 1]))
            assert index[j] == delta_ends.get(end, -1)
            matched += index[j] >= 0
            unmatched += index[j] < 0
        assert index[0] == 0 and index[-1] == len(delta_ids) - 1
    # Both kinds occur, so the check is not vacuous.
    assert matched > 100 and unmatched > 10


def test_a_document_opened_by_an_eos_as_bos_opens_with_the_deltas_bos(tokenizers):
    sentencepiece, bpe = tokenizers
    assert bpe.bos_id == bpe.eos_id  # byte-level BPE has no BOS
    cross = CrossVocab(bpe, sentencepiece, build_map(bpe, sentencepiece))
    text = stdlib_texts()[0]
    delta_ids, _ = align_segment(cross, [bpe.bos_id, *bpe.encode(text), bpe.eos_id])
    assert delta_ids == [sentencepiece.bos_id, *sentencepiece.encode(text), sentencepiece.eos_id]


def test_rows_stack_with_offsets_padding_and_positions_per_piece(tokenizers):
    user, delta = tokenizers
    cross = CrossVocab(user, delta, build_map(user, delta))
    batch = packed_batch(user, stdlib_texts()[:3], rows=50, seq_len=36)
    rows = [
        align_row(cross, i, s) for i, s in zip(batch["inputs"], batch["segment_ids"], strict=True)
    ]
    width = 36 * -(-max(len(r.tokens) for r in rows) // 36)
    arrays = stack_rows(rows, width, delta.pad_id)
    assert arrays["delta_inputs"].shape == (len(rows), width)
    assert arrays["delta_index"].shape == batch["inputs"].shape
    for r, row in enumerate(rows):
        real = batch["segment_ids"][r] > 0
        assert (row.index_L[~real] == -1).all()
        index = row.index_L[real & (row.index_L >= 0)]
        # Each position's delta token is in the same document piece, read no further than it.
        assert (np.diff(index) > 0).all()
        for segment in set(row.segment_ids):
            positions = [
                p for p, s in zip(row.positions, row.segment_ids, strict=True) if s == segment
            ]
            assert positions == list(range(len(positions)))
    assert (batch["segment_ids"][-1] == 0).any()  # the last row is padded
