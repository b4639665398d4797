"""The link under faults: a damaging transport, a host that dies mid-load, a silent or
garbling peer. Loads either arrive intact (checked by the chip's CRC over a clean connection)
or fail with a TernError; never silently wrong."""

import socket
import threading

import pytest

from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.protocol import Code, FrameDecoder, encode_frame
from tern_fpga.host.driver import Board
from tern_fpga.host.link import LinkGaveUpError, LinkTimeoutError
from tern_fpga.host.transport import FaultyTransport, SerialTransport, TransportError

from support.link import expected_chain, random_export, section_crcs_match


@pytest.mark.parametrize("seed, rate, must_load", [(1, 2e-4, True), (2, 2e-4, True),
                                                  (3, 2e-3, False)])
def test_faulty_link_loads_intact_or_fails_loudly(virtual_board, seed, rate, must_load):
    export = random_export(10 + seed)
    faulty = FaultyTransport(SerialTransport(virtual_board), flip=rate, drop=rate,
                             duplicate=rate, seed=seed)
    loaded = False
    try:
        with Board(virtual_board, transport=faulty, timeout=0.15, retries=8) as board:
            board.load_export(export, progress=False)
            loaded = True
            generated = list(board.generate([5], 40))
            assert generated == expected_chain(5, 40)
    except TernError as error:
        assert not must_load, f"the load failed at a low fault rate: {error}"
    assert sum(faulty.faults.values()) > 0
    if must_load:
        assert board.link.stats["retransmissions"] > 0
    with Board(virtual_board) as clean:
        assert section_crcs_match(clean, export) or not loaded


class DyingTransport:
    """Passes ``limit`` bytes, then writes half of the next write and dies (closes)."""

    def __init__(self, inner, limit):
        self.inner, self.limit, self.written = inner, limit, 0

    def write(self, data):
        if self.written + len(data) > self.limit:
            self.inner.write(data[:len(data) // 2])
            self.inner.close()
            raise TransportError("the host was killed")
        self.written += len(data)
        self.inner.write(data)

    def read(self, timeout):
        return self.inner.read(timeout)

    def close(self):
        self.inner.close()


def test_host_killed_mid_load_can_reconnect_and_reload(virtual_board):
    export = random_export(20)
    dying = DyingTransport(SerialTransport(virtual_board), limit=5000)
    board = Board(virtual_board, transport=dying)
    with pytest.raises(TransportError, match="killed"):
        board.load_export(export, progress=False)
    with Board(virtual_board) as board:
        board.load_export(export, progress=False)
        assert section_crcs_match(board, export)
        # The half frame was dropped (cut by the next FLAG or the frame timeout).
        assert board.status().frame_errors >= 1


class FakePeer:
    """A TCP peer that never answers, or answers every frame with a NAK."""

    def __init__(self, nak: bool):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.url = f"socket://127.0.0.1:{self.server.getsockname()[1]}"
        self.nak = nak
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        connection, _ = self.server.accept()
        decoder = FrameDecoder()
        with connection:
            while data := connection.recv(4096):
                for frame in decoder.feed(data):
                    if self.nak:
                        connection.sendall(encode_frame(frame.seq, Code.NAK, b"\x01"))


def test_silent_board_times_out_with_a_clear_message():
    peer = FakePeer(nak=False)
    with pytest.raises(LinkTimeoutError) as error:
        Board(peer.url, timeout=0.1, retries=1)
    message = str(error.value)
    assert f"no answer from {peer.url} to IDENTIFY in 2 attempts" in message
    for hint in ("check the cable and the port", "baud rate (3000000)", "`tern flash`"):
        assert hint in message


def test_link_gives_up_after_retries():
    peer = FakePeer(nak=True)
    with pytest.raises(LinkGaveUpError, match=r"gave up on IDENTIFY after 4 attempts \(last: "
                                              r"the board reported a damaged frame \(NAK\)"):
        Board(peer.url, timeout=0.1, retries=3)


def test_lost_token_frames_are_read_back_from_the_chip(virtual_board):
    with Board(virtual_board) as board:
        board.entry_points = {"reset": 0, "step": 2}
        receive, polls = board.link.notification, []
        fetch = board._tokens

        def lossy(timeout):
            # Every third TOKEN frame is lost on the way.
            frame = receive(timeout)
            lost = frame is not None and frame.payload[0] % 3 == 1
            return None if lost else frame

        def counting(start, wanted):
            polls.append(start)
            return fetch(start, wanted)

        board.link.notification, board._tokens = lossy, counting
        assert list(board.generate([9], 120)) == expected_chain(9, 120)
        assert polls, "no token was read back"
