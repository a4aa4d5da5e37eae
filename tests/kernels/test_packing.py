import torch

from awqguard.kernels.packing import ORDER, REVERSE_ORDER, pack_int4, unpack_int4


def test_hand_worked_word():
    # columns 0..7 hold values 1..8; nibble i holds column ORDER[i] = [0,2,4,6,1,3,5,7]
    # -> nibbles (low to high) 1,3,5,7,2,4,6,8 -> 0x86427531
    values = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])
    word = pack_int4(values)
    assert word.dtype == torch.int32 and word.shape == (1, 1)
    assert int(word) & 0xFFFFFFFF == 0x86427531
    assert int(word) == 0x86427531 - 2**32        # top nibble 8 -> a negative int32
    assert unpack_int4(word).tolist() == values.tolist()


def test_single_column_positions():
    for col in range(8):
        values = torch.zeros(1, 8, dtype=torch.int32)
        values[0, col] = 0xF
        nibble = ORDER.index(col)
        assert int(pack_int4(values)) & 0xFFFFFFFF == 0xF << (4 * nibble)
    assert [ORDER[REVERSE_ORDER[c]] for c in range(8)] == list(range(8))


def test_round_trip_random_including_negative_words():
    gen = torch.Generator().manual_seed(0)
    values = torch.randint(0, 16, (64, 256), generator=gen)
    packed = pack_int4(values)
    assert packed.shape == (64, 32)
    assert (packed < 0).any() and (packed > 0).any()
    assert torch.equal(unpack_int4(packed), values.to(torch.int32))


def test_unpack_of_arbitrary_int32_words_round_trips():
    gen = torch.Generator().manual_seed(1)
    words = torch.randint(-2**31, 2**31 - 1, (16, 8), generator=gen, dtype=torch.int64).to(torch.int32)
    assert torch.equal(pack_int4(unpack_int4(words)), words)


def test_pack_rejects_out_of_range():
    import pytest
    with pytest.raises(ValueError):
        pack_int4(torch.full((1, 8), 16))
    with pytest.raises(ValueError):
        pack_int4(torch.zeros(1, 7, dtype=torch.int32))
