"""Reassembly of fragmented messages."""

from syncws.protocol.connection import Protocol, Side
from syncws.protocol.events import Binary, Text
from syncws.protocol.messages import MessageAssembler, join_frames


def test_single_frame_message_is_returned_as_is() -> None:
    assembler = MessageAssembler()
    data = b"x" * 100
    assert assembler.add(Binary(data)) is data
    assert not assembler.in_progress


def test_fragmented_text_and_binary() -> None:
    assembler = MessageAssembler()
    assert assembler.add(Text("a", final=False)) is None
    assert assembler.in_progress
    assert assembler.add(Text("b", final=False)) is None
    assert assembler.add(Text("c")) == "abc"
    assert not assembler.in_progress
    assert assembler.add(Binary(b"1", final=False)) is None
    assert assembler.add(Binary(b"2")) == b"12"


def test_end_to_end_with_the_core() -> None:
    sender, receiver = Protocol(Side.CLIENT), Protocol(Side.SERVER)
    sender.send_text("Hello, ", fin=False)
    sender.send_continuation("wörld", fin=True)
    sender.send_binary(b"\x00" * 10)
    receiver.receive_data(b"".join(sender.data_to_send()))
    assembler = MessageAssembler()
    messages = [assembler.add(event) for event in receiver.events_received()]
    assert [m for m in messages if m is not None] == ["Hello, wörld", b"\x00" * 10]


def test_join_frames() -> None:
    data = b"x" * 100
    assert join_frames([Binary(data)]) is data
    assert join_frames([Text("a", final=False), Text("b")]) == "ab"
    assert join_frames([Binary(b"a", final=False), Binary(b"b")]) == b"ab"
