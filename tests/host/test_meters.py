"""Power meters against simulated devices: a fake sysfs tree, a fake powercap counter that
wraps, a pseudo-terminal speaking the UM meters' protocol, a fake nvidia-smi on PATH."""

import os
import random
import sys
import threading
import time
from pathlib import Path

import pytest

from tern_fpga.commands.cli import main as tern_main
from tern_fpga.host.meters import (
    HwmonMeter,
    MeterError,
    NvidiaSmiMeter,
    RaplMeter,
    UmMeter,
    find_meters,
    measure_generation,
    open_meter,
)
from tern_fpga.host.meters.base import Sample
from tern_fpga.host.meters.um import FRAME_LENGTH, POLL, UmReading, encode_frame, parse_frame


def make_hwmon(root: Path, index: int, name: str, files: dict) -> Path:
    device = root / "class" / "hwmon" / f"hwmon{index}"
    device.mkdir(parents=True)
    (device / "name").write_text(name + "\n")
    for file_name, value in files.items():
        (device / file_name).write_text(f"{value}\n")
    return device


class FileUpdater:
    """A thread that writes values from ``values`` (cycling) into ``path`` every ``period``."""

    def __init__(self, path: Path, values: list, period: float = 0.003):
        self.path, self.values, self.period = path, values, period
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        index = 0
        while not self.stop.is_set():
            # Write whole files atomically, as sysfs presents them.
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(f"{self.values[index % len(self.values)]}\n")
            temporary.replace(self.path)
            index += 1
            self.stop.wait(self.period)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop.set()
        self.thread.join()


# hwmon -----------------------------------------------------------------------------------------

def test_hwmon_samples_follow_an_updating_power_file(tmp_path):
    rng = random.Random(1)
    microwatts = [rng.randrange(1_000_000, 9_000_000) for _ in range(7)]
    device = make_hwmon(tmp_path, 3, "ina219", {"power1_input": microwatts[0]})
    meter = HwmonMeter(device)
    assert meter.description == "hwmon3 ina219 channel 1"
    with FileUpdater(device / "power1_input", microwatts), meter.sampling(rate_hz=200):
        time.sleep(0.3)
    watts = {value * 1e-6 for value in microwatts}
    assert len(meter.samples) >= 5
    assert all(sample.watts in watts for sample in meter.samples)
    assert len({sample.watts for sample in meter.samples}) >= 2  # it did follow the updates
    assert min(watts) <= meter.mean_watts <= max(watts)
    times = [sample.time for sample in meter.samples]
    assert times == sorted(times) and meter.duration == pytest.approx(times[-1] - times[0])


def test_hwmon_current_times_voltage_and_trapezoid_energy(tmp_path):
    # No power file: an ina2xx-style device with curr1 (mA) and in1 (bus voltage, mV).
    device = make_hwmon(tmp_path, 0, "ina226", {"curr1_input": 1500, "in1_input": 5000,
                                                "in0_input": 7})
    meter = HwmonMeter(device)
    assert meter.read_watts() == pytest.approx(7.5)
    first = Sample.following(None, 10.0, 2.0)
    second = Sample.following(first, 10.5, 4.0)
    assert (first.joules, second.joules) == (0.0, pytest.approx(1.5))


def test_hwmon_idle_baseline_and_dynamic_energy(tmp_path):
    device = make_hwmon(tmp_path, 1, "ina219", {"power1_input": 2_500_000})
    meter = open_meter(f"hwmon:{device}")
    assert meter.idle_baseline(0.15, rate_hz=100) == pytest.approx(2.5)
    (device / "power1_input").write_text("6250000\n")
    with meter.sampling(100):
        time.sleep(0.15)
    assert meter.mean_watts == pytest.approx(6.25)
    assert meter.dynamic_watts == pytest.approx(3.75)
    assert meter.dynamic_joules == pytest.approx(3.75 * meter.duration)
    assert meter.joules == pytest.approx(6.25 * meter.duration)


def test_hwmon_specs_by_name_channel_and_first(tmp_path):
    make_hwmon(tmp_path, 0, "acpitz", {"temp1_input": 40000})
    make_hwmon(tmp_path, 1, "ina3221", {"curr2_input": 200, "in2_input": 12000})
    make_hwmon(tmp_path, 2, "ina219", {"power1_input": 1_000_000})
    assert open_meter("hwmon:ina219", sysfs=tmp_path).read_watts() == pytest.approx(1.0)
    assert open_meter("hwmon:ina3221#2", sysfs=tmp_path).read_watts() == pytest.approx(2.4)
    # No channel given: the first channel with a power reading.
    assert open_meter("hwmon", sysfs=tmp_path).description == "hwmon1 ina3221 channel 2"
    with pytest.raises(MeterError, match=r"hwmon1 \(ina3221\) has no power reading on channel "
                                         r"3"):
        open_meter("hwmon:ina3221#3", sysfs=tmp_path)
    with pytest.raises(MeterError, match=r"hwmon channel must be a number, not 'x'"):
        open_meter("hwmon:ina3221#x", sysfs=tmp_path)


def test_hwmon_errors_name_the_device_and_the_fix(tmp_path):
    with pytest.raises(MeterError, match=r"^no hwmon device at .*hwmon9; list meters with "
                                         r"`tern meters`$"):
        HwmonMeter(tmp_path / "hwmon9")
    device = make_hwmon(tmp_path, 0, "acpitz", {"temp1_input": 40000})
    with pytest.raises(MeterError, match=r"has no power reading on channel 1 \(power1_input, or "
                                         r"curr1_input with in1_input\)"):
        HwmonMeter(device)
    with pytest.raises(MeterError, match=r"^no hwmon device named 'ina219' with power readings "
                                         r"under .*; list meters with `tern meters`$"):
        open_meter("hwmon:ina219", sysfs=tmp_path)
    with pytest.raises(MeterError, match=r"^unknown meter kind 'watt' in 'watt:3'; a meter spec"):
        open_meter("watt:3")


def test_a_reading_that_fails_while_sampling_is_raised_at_stop(tmp_path):
    device = make_hwmon(tmp_path, 0, "ina219", {"power1_input": 1_000_000})
    meter = HwmonMeter(device)
    meter.start(rate_hz=100)
    (device / "power1_input").unlink()
    time.sleep(0.1)
    with pytest.raises(MeterError, match=r"cannot read .*power1_input"):
        meter.stop()
    assert not meter.running


def test_meter_state_errors(tmp_path):
    meter = HwmonMeter(make_hwmon(tmp_path, 0, "ina219", {"power1_input": 5}))
    with pytest.raises(MeterError, match=r"has no samples yet; sample a run first"):
        _ = meter.mean_watts
    meter.start(rate_hz=50)
    with pytest.raises(MeterError, match=r"^hwmon0 ina219 channel 1 is already sampling; stop it "
                                         r"first$"):
        meter.start()
    meter.stop()
    with pytest.raises(MeterError, match=r"has no idle baseline; call idle_baseline\(seconds\)"):
        _ = meter.dynamic_joules
    with pytest.raises(ValueError, match=r"sampling rate must be a positive number of Hz, not 0"):
        meter.start(rate_hz=0)


# measure_generation ---------------------------------------------------------------------------

def test_measure_generation_subtracts_the_idle_baseline(tmp_path):
    device = make_hwmon(tmp_path, 0, "ina219", {"power1_input": 1_200_000})
    meter = HwmonMeter(device)
    meter.idle_baseline(0.1, rate_hz=100)
    (device / "power1_input").write_text("4700000\n")
    tokens = list(range(37))

    def generate():
        time.sleep(0.2)
        return tokens

    result = measure_generation(meter, generate, rate_hz=100)
    assert result.tokens == 37 and result.idle_subtracted
    assert result.seconds >= 0.2
    assert result.tokens_per_s == pytest.approx(37 / result.seconds)
    assert result.mean_watts == pytest.approx(4.7)
    assert result.joules_per_token == pytest.approx(3.5 * result.seconds / 37)
    assert result.gross_joules_per_token == pytest.approx(4.7 * result.seconds / 37)
    with pytest.raises(ValueError, match="produced 0 tokens"):
        measure_generation(meter, lambda: 0)


# RAPL ----------------------------------------------------------------------------------------

def make_rapl(root: Path, energy_uj: int, max_range_uj: int) -> Path:
    domain = root / "class" / "powercap" / "intel-rapl:0"
    domain.mkdir(parents=True)
    (domain / "name").write_text("package-0\n")
    (domain / "energy_uj").write_text(f"{energy_uj}\n")
    (domain / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
    (root / "class" / "powercap" / "intel-rapl:0:0").mkdir()  # a sub-zone: not listed
    return domain


def test_rapl_counts_across_a_wrap(tmp_path):
    domain = make_rapl(tmp_path, 900_000, 1_000_000)
    meter = RaplMeter(domain)
    (domain / "energy_uj").write_text("150000\n")
    assert meter._advance() == pytest.approx(0.25)


def test_rapl_energy_follows_a_wrapping_counter(tmp_path):
    # Wraps every 0.24 s: several times in the run, at most once between two samples even when
    # other processes delay this test's threads.
    watts, max_range = 37.0, 9_000_000
    domain = make_rapl(tmp_path, 0, max_range)
    start = time.monotonic()

    class Counter(FileUpdater):
        def _run(self):
            while not self.stop.is_set():
                energy = round(watts * (time.monotonic() - start) * 1e6) % max_range
                temporary = self.path.with_suffix(".tmp")
                temporary.write_text(f"{energy}\n")
                temporary.replace(self.path)
                self.stop.wait(0.001)

    with Counter(domain / "energy_uj", []):
        time.sleep(0.02)
        meter = open_meter(f"rapl:{domain}")
        with meter.sampling(rate_hz=50):
            time.sleep(0.6)
    assert meter.joules > max_range * 1e-6  # more than the counter's range: the wraps counted
    assert meter.mean_watts == pytest.approx(watts, rel=0.2)
    assert all(sample.watts >= 0 for sample in meter.samples[1:])  # never a negative jump


def test_rapl_errors(tmp_path, monkeypatch):
    with pytest.raises(MeterError, match=r"^no RAPL energy counter at .*energy_uj"):
        RaplMeter(tmp_path / "intel-rapl:0")
    domain = make_rapl(tmp_path, 5, 10)
    original = Path.read_text

    def forbidden(path, *args, **kwargs):
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return original(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", forbidden)
    with pytest.raises(MeterError, match=r"energy_uj is readable by root only .* run as root or "
                                         r"allow it with `sudo chmod a\+r .*energy_uj`$"):
        RaplMeter(domain)


# UM24C / UM25C / UM34C -----------------------------------------------------------------------

# Resolution of voltage and current per model (sigrok's rdtech-um driver).
RESOLUTION = {"UM24C": (0.01, 0.001), "UM25C": (0.001, 0.0001), "UM34C": (0.01, 0.001)}


def random_reading(rng: random.Random, model: str) -> UmReading:
    volt_unit, amp_unit = RESOLUTION[model]
    return UmReading(model, rng.randrange(round(3 / volt_unit), round(20 / volt_unit)) * volt_unit,
                     rng.randrange(0, round(3 / amp_unit)) * amp_unit,
                     rng.randrange(0, 60000) * 1e-3, rng.randrange(10, 60))


@pytest.mark.parametrize("model", ["UM24C", "UM25C", "UM34C"])
def test_um_frames_round_trip(model):
    rng = random.Random(model)
    for _ in range(20):
        reading = random_reading(rng, model)
        template = bytes(rng.randrange(256) for _ in range(FRAME_LENGTH))
        parsed = parse_frame(encode_frame(reading, template))
        assert parsed.model == model and parsed.celsius == reading.celsius
        assert (parsed.volts, parsed.amps, parsed.watts) == pytest.approx(
            (reading.volts, reading.amps, reading.watts))


def test_um_frame_layout_is_the_documented_one():
    # A UM25C answer: 0x09C9, 5.123 V (1 mV units), 0.4567 A (0.1 mA), 2339 mW, 31 C, 0xFFF1.
    frame = bytearray(FRAME_LENGTH)
    frame[0:12] = bytes.fromhex("09c9 1403 11d7 00000923 001f")
    frame[128:130] = b"\xff\xf1"
    assert parse_frame(bytes(frame)) == UmReading("UM25C", pytest.approx(5.123),
                                                  pytest.approx(0.4567), pytest.approx(2.339), 31)
    frame[129] = 0xF2
    with pytest.raises(MeterError, match="UM25C frame lacks its end marker 0xFFF1"):
        parse_frame(bytes(frame))
    frame[0:2] = b"\x12\x34"
    with pytest.raises(MeterError, match="unknown USB meter model id 0x1234"):
        parse_frame(bytes(frame))
    um34c = bytearray(encode_frame(UmReading("UM34C", 5.0, 1.0, 5.0, 30)))
    um34c[3] ^= 0x40  # a bit flip in a byte that the checksum covers
    with pytest.raises(MeterError, match="UM34C frame has a bad checksum"):
        parse_frame(bytes(um34c))
    with pytest.raises(MeterError, match="answered 12 bytes, not 130"):
        parse_frame(bytes(12))


class FakeUmMeter:
    """A UM meter on the master side of a pseudo-terminal: answers each 0xF0 with a frame."""

    def __init__(self, readings: list[UmReading], answer: bool = True):
        self.master, slave = os.openpty()
        self.port = os.ttyname(slave)
        self._slave = slave
        self.readings, self.answer, self.polls = readings, answer, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import select
        while not self.stop.is_set():
            if not select.select([self.master], [], [], 0.02)[0]:
                continue
            for byte in os.read(self.master, 64):
                if byte == POLL and self.answer:
                    frame = encode_frame(self.readings[self.polls % len(self.readings)])
                    self.polls += 1
                    os.write(self.master, frame[:50])  # in two pieces, as Bluetooth does
                    os.write(self.master, frame[50:])

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop.set()
        self.thread.join()
        os.close(self.master)
        os.close(self._slave)


@pytest.mark.parametrize("model", ["UM24C", "UM25C", "UM34C"])
def test_um_meter_over_a_pseudo_terminal(model):
    rng = random.Random(f"pty-{model}")
    readings = [random_reading(rng, model) for _ in range(5)]
    with FakeUmMeter(readings) as device:
        meter = open_meter(f"{model.lower()}:{device.port}")
        try:
            first = meter.read()
            assert (first.volts, first.amps, first.watts) == pytest.approx(
                (readings[0].volts, readings[0].amps, readings[0].watts))
            with meter.sampling(rate_hz=50):
                time.sleep(0.15)
        finally:
            meter.close()
    assert len(meter.samples) >= 3
    for sample in meter.samples:
        assert any(sample.watts == pytest.approx(reading.watts) for reading in readings)


def test_um_meter_errors():
    with FakeUmMeter([UmReading("UM24C", 5.0, 0.5, 2.5, 25)]) as device:
        meter = UmMeter(device.port, "UM25C")
        with pytest.raises(MeterError, match=rf"the meter on {device.port} is a UM24C, not a "
                                             rf"UM25C"):
            meter.read()
        meter.close()
    with FakeUmMeter([], answer=False) as device:
        meter = UmMeter(device.port, timeout=0.1)
        with pytest.raises(MeterError, match=r"did not answer; is it on and paired\?"):
            meter.read()
        meter.close()
    with pytest.raises(MeterError, match=r"^cannot open USB meter port /nonexistent/rfcomm7: .*"
                                         r"bind the meter with `rfcomm bind` first"):
        open_meter("um25c:/nonexistent/rfcomm7")
    with pytest.raises(MeterError, match=r"unknown USB meter model 'UM99'"):
        UmMeter("/dev/null", "UM99")


# nvidia-smi ----------------------------------------------------------------------------------

FAKE_NVIDIA_SMI = """#!{python}
import sys, time
args = sys.argv[1:]
open({log!r}, "a").write(" ".join(args) + "\\n")
if args == ["-L"]:
    print("GPU 0: NVIDIA H200 (UUID: GPU-0000)")
    print("GPU 1: NVIDIA H200 (UUID: GPU-0001)")
    sys.exit(0)
values = {values!r}
loop = args[args.index("-lms") + 1] if "-lms" in args else None
index = 0
while True:
    print(values[index % len(values)], flush=True)
    index += 1
    if loop is None:
        break
    time.sleep(int(loop) / 1000)
"""


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    def install(values):
        folder = tmp_path / "bin"
        folder.mkdir(exist_ok=True)
        script = folder / "nvidia-smi"
        log = tmp_path / "nvidia-smi.log"
        script.write_text(FAKE_NVIDIA_SMI.format(python=sys.executable, log=str(log),
                                                 values=values))
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
        return log
    return install


def test_nvidia_smi_streams_samples(fake_nvidia_smi):
    rng = random.Random(5)
    values = [f"{rng.uniform(60, 700):.2f}" for _ in range(6)]
    log = fake_nvidia_smi(values)
    meter = open_meter("nvidia-smi:1")
    assert meter.read_watts() == float(values[0])
    with meter.sampling(rate_hz=50):
        time.sleep(0.3)
    assert len(meter.samples) >= 4
    assert [sample.watts for sample in meter.samples] == \
        [float(values[i % len(values)]) for i in range(len(meter.samples))]
    assert min(map(float, values)) <= meter.mean_watts <= max(map(float, values))
    calls = log.read_text().splitlines()
    assert calls[-1] == ("--query-gpu=power.draw --format=csv,noheader,nounits -i 1 -lms 20")
    assert meter._process is None  # the streaming process was ended


def test_nvidia_smi_errors(fake_nvidia_smi, monkeypatch):
    fake_nvidia_smi(["[N/A]"])
    with pytest.raises(MeterError, match=r"GPU 0 gives no power.draw reading: nvidia-smi printed "
                                         r"'\[N/A\]'"):
        NvidiaSmiMeter(0).read_watts()
    with pytest.raises(MeterError, match=r"GPU 0 gives no power.draw reading"):
        NvidiaSmiMeter(0).start(rate_hz=50)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(MeterError, match=r"^nvidia-smi not found on PATH"):
        open_meter("nvidia-smi")
    with pytest.raises(MeterError, match=r"wants a GPU index, like nvidia-smi:0, not 'x'"):
        open_meter("nvidia-smi:x")


# Discovery and `tern meters` -------------------------------------------------------------------

def test_find_meters_and_tern_meters(tmp_path, fake_nvidia_smi, capsys):
    fake_nvidia_smi(["123.5"])
    make_hwmon(tmp_path, 0, "k10temp", {"temp1_input": 40000})
    make_hwmon(tmp_path, 4, "ina219", {"power1_input": 3_250_000})
    make_rapl(tmp_path, 1000, 10_000_000)
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "rfcomm0").touch()
    specs = [meter.spec for meter in find_meters(tmp_path, dev)]
    assert specs == [f"hwmon:{tmp_path}/class/hwmon/hwmon4",
                     f"rapl:{tmp_path}/class/powercap/intel-rapl:0",
                     "nvidia-smi:0", "nvidia-smi:1", f"um:{dev}/rfcomm0"]
    assert tern_main(["meters", "--sysfs", str(tmp_path), "--read"]) == 0
    out = capsys.readouterr().out
    assert "ina219 power channel 1: 3.250 W" in out
    assert "nvidia-smi:1" in out and "NVIDIA H200 board power (nvidia-smi): 123.500 W" in out
    assert "RAPL package-0 energy counter" in out
