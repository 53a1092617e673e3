# -*- test-case-name: tests.benchmarks.test_runner -*-
"""
Tests for the benchmark runner's pure parts: its command line, broker
specifications, the load generator's command line and output, the checks and
figures of each scenario, and the summary with its ratios.

Nothing here starts a broker or opens a socket.
"""

from __future__ import annotations

import io
import json
import os
import stat
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from benchmarks import pyload
from benchmarks.brokers import (
    CHECKOUT,
    CONFIGS,
    BrokerError,
    BrokerSpec,
    broker_argv,
    parse_broker,
    parse_broker_configs,
    render_template,
)
from benchmarks.loadgen import (
    PYLOAD,
    GeneratorError,
    LoadGenerator,
    find_generator,
    generator_argv,
    parse_output,
    timing_for,
)
from benchmarks.run import contention_note, main, parse_args
from benchmarks.scenarios import (
    FLOOD_DRAIN,
    FULL_TIMING,
    SCENARIOS,
    SMOKE_TIMING,
    Timing,
    check,
    extract_metrics,
    select,
)
from benchmarks.summary import (
    Stats,
    checks_table,
    default_ratios,
    format_ratio,
    format_stats,
    load_records,
    metric_table,
    parse_ratio,
    ratio,
    stats,
)

#: A real mqload result line (S1 against mqttx), as it prints it.
MQLOAD_PUBSUB = (
    '{"tool":"mqload","v":1,"mode":"pubsub","label":"","broker":"127.0.0.1:18801","mqtt":4,'
    '"pubs":10,"subs":1,"topics":10,"sub_mode":"wild","pub_qos":0,"sub_qos":0,"size":64,'
    '"rate_target":0.0,"inflight":20,"window":100,"duration_s":3.00,"warmup_s":1.00,'
    '"measured":true,"pub_rate":171700.0,"recv_rate":171784.0,"recv_MBps":10.994,"ack_rate":0.0,'
    '"latency_us":{"n":515100,"p50":5652.5,"p90":6078.5,"p99":9601.0,"p999":10387.5,'
    '"max":43382.5,"mean":5780.5},"ack_latency_us":{"n":0,"p50":null,"p90":null,"p99":null,'
    '"p999":null,"max":null,"mean":null},"published":675652,"expected":675652,'
    '"received":675652,"unique":675652,"lost":0,"dup":0,"reordered":0,"acks":0,"unacked":0,'
    '"bad_payload":0,"proto_err":0,"disconnects":0,"conn_fail":0,"ack_err":0,'
    '"window_timeouts":0,"aborted":false,"abort_reason":"","drain_s":0.04,"broker_pid":3177,'
    '"broker_cpu_pct":98.7,"broker_rss_kb_start":55756,"broker_rss_kb_ready":55784,'
    '"broker_rss_kb_window_end":55964,"broker_rss_kb_end":55952,"self_cpu_pct":3.0,'
    '"broker_cpu_us_per_msg":5.744,"self_cpu_us_per_msg":0.177,"writes":6825,"reads":768,'
    '"bytes_out":58782047,"bytes_in":58781773,"cpus":[{"busy_pct":99.0,"steal_pct":0.0},'
    '{"busy_pct":3.4,"steal_pct":0.0}],"timeline_recv_per_s":[159300,163000,175000,177352,1000]}'
)

#: A real mqload connect-storm result line.
MQLOAD_CONN = (
    '{"tool":"mqload","v":1,"mode":"conn","label":"","broker":"127.0.0.1:18801","mqtt":4,'
    '"target":2000,"parallel":64,"keepalive":60,"connected":2000,"failed":0,'
    '"connect_time_s":1.175,"connect_rate":1702.2,"held_s":2.01,"still_open_end":2000,'
    '"dropped_during_hold":0,"connack_latency_us":{"n":2000,"p50":5914.6,"p90":7290.9,'
    '"p99":23265.3,"p999":1008730.1,"max":1015307.6,"mean":8032.5},"broker_pid":3177,'
    '"rss_kb_before":55952,"rss_kb_connected":64104,"rss_kb_end":64104,"bytes_per_conn":4174,'
    '"kernel_tcp_mem_pages_before":9,"kernel_tcp_mem_pages_connected":9,"aborted":false,'
    '"abort_reason":"","self_cpu_s":0.10,"timeline_conn_per_s":[1997,3]}'
)


def scenario(name: str) -> Any:
    (found,) = select([name])
    return found


def pubsub(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(MQLOAD_PUBSUB)
    raw.update(changes)
    return raw


def record(scen: str, broker: str, **metrics: float | None) -> dict[str, Any]:
    return {"scenario": scen, "broker": broker, "metrics": metrics, "ok": True, "problems": []}


class ParseArgsTests(SynchronousTestCase):
    """
    The runner's command line.
    """

    def parse_error(self, *argv: str) -> str:
        err = io.StringIO()
        with redirect_stderr(err), self.assertRaises(SystemExit) as raised:
            parse_args(list(argv))
        self.assertEqual(raised.exception.code, 2)
        return err.getvalue()

    def test_defaults(self) -> None:
        """
        Without arguments the runner measures mqttx from this checkout in
        every scenario, three rounds, MQTT 3.1.1, pinned, not strict.
        """
        o = parse_args([])
        self.assertEqual([b.name for b in o.brokers], ["mqttx"])
        self.assertEqual(o.brokers[0].checkout, CHECKOUT)
        self.assertEqual([s.name for s in o.scenarios], [s.name for s in SCENARIOS])
        self.assertEqual((o.rounds, o.mqtt, o.pin, o.strict, o.smoke), (3, 4, True, False, False))
        self.assertIsNone(o.timing)
        self.assertEqual(o.ratios, ())

    def test_smoke(self) -> None:
        """
        C{--smoke} means one round and strict checks.
        """
        o = parse_args(["--smoke"])
        self.assertEqual((o.rounds, o.strict, o.smoke), (1, True, True))

    def test_brokers_and_default_ratios(self) -> None:
        """
        Several brokers run in the order given; ratios default to every
        broker over the first.
        """
        o = parse_args(["-b", "mosquitto", "-b", "mqttx", "-b", "10.0.0.1:1883"])
        self.assertEqual([b.name for b in o.brokers], ["mosquitto", "mqttx", "10.0.0.1:1883"])
        self.assertEqual(o.ratios, (("mqttx", "mosquitto"), ("10.0.0.1:1883", "mosquitto")))

    def test_explicit_ratios(self) -> None:
        """
        C{--ratio A/B} replaces the default ratios.
        """
        o = parse_args(["-b", "mqttx", "-b", "mosquitto", "--ratio", "mqttx/mosquitto"])
        self.assertEqual(o.ratios, (("mqttx", "mosquitto"),))

    def test_ratio_of_unknown_broker(self) -> None:
        """
        A ratio naming a broker that is not under test is a usage error.
        """
        self.assertIn("'amqtt' is not one of", self.parse_error("--ratio", "mqttx/amqtt"))

    def test_duplicate_broker_names(self) -> None:
        """
        Two brokers with the same name are refused.
        """
        self.assertIn("must differ", self.parse_error("-b", "mqttx", "-b", "mqttx"))

    def test_scenarios_comma_separated_any_case(self) -> None:
        """
        Scenarios are chosen case-insensitively, comma-separated or repeated,
        and run in the standard order.
        """
        o = parse_args(["-s", "s6,FLOOD", "-s", "S1"])
        self.assertEqual([s.name for s in o.scenarios], ["S1", "S6", "flood"])

    def test_unknown_scenario(self) -> None:
        """
        An unknown scenario is a usage error listing the known ones.
        """
        self.assertIn("unknown scenario s9", self.parse_error("-s", "S9"))

    def test_timing_override_fills_in_defaults(self) -> None:
        """
        Any of C{--duration}, C{--warmup} and C{--drain} replaces the timing;
        the others keep the mode's defaults.
        """
        self.assertEqual(
            parse_args(["--duration", "5"]).timing,
            Timing(5.0, FULL_TIMING.warmup, FULL_TIMING.drain),
        )
        self.assertEqual(
            parse_args(["--smoke", "--drain", "1"]).timing,
            Timing(SMOKE_TIMING.duration, SMOKE_TIMING.warmup, 1.0),
        )
        self.assertIn("positive", self.parse_error("--duration", "0"))

    def test_tolerate(self) -> None:
        """
        C{--tolerate SCENARIO:KIND} is kept with the scenario's own name.
        """
        self.assertEqual(parse_args(["--tolerate", "s6:lost"]).tolerate, {("S6", "lost")})
        self.assertIn("SCENARIO:KIND", self.parse_error("--tolerate", "S6"))

    def test_rounds_at_least_one(self) -> None:
        """
        Zero rounds is a usage error.
        """
        self.assertIn("at least 1", self.parse_error("-n", "0"))


class BrokerSpecTests(SynchronousTestCase):
    """
    C{--broker} values.
    """

    def test_mqttx(self) -> None:
        """
        C{mqttx} is this checkout with the mqttx configuration template.
        """
        spec = parse_broker("mqttx")
        self.assertEqual(
            spec, BrokerSpec("mqttx", "mqttx", config=CONFIGS / "mqttx.yaml", checkout=CHECKOUT)
        )
        self.assertTrue(spec.managed)

    def test_other_checkout(self) -> None:
        """
        C{NAME=mqttx:PATH} runs another checkout under that name; a path
        that is no checkout is refused.
        """
        spec = parse_broker(f"before=mqttx:{CHECKOUT}")
        self.assertEqual((spec.name, spec.kind, spec.checkout), ("before", "mqttx", CHECKOUT))
        with self.assertRaises(BrokerError):
            parse_broker("mqttx:/nonexistent")

    def test_mosquitto_preset(self) -> None:
        """
        C{mosquitto} is C{mosquitto -c {config}} with its template.
        """
        spec = parse_broker("mosquitto")
        self.assertEqual(spec.command, ("mosquitto", "-c", "{config}"))
        self.assertEqual(spec.config, CONFIGS / "mosquitto.conf")

    def test_command_finds_template_by_name(self) -> None:
        """
        A command using C{{config}} gets C{configs/NAME.*} when no
        C{--broker-config} is given.
        """
        spec = parse_broker("amqtt=/tmp/amqtt-venv/bin/amqtt -c {config}")
        self.assertEqual(spec.name, "amqtt")
        self.assertEqual(spec.command, ("/tmp/amqtt-venv/bin/amqtt", "-c", "{config}"))
        self.assertEqual(spec.config, CONFIGS / "amqtt.yaml")

    def test_command_with_port(self) -> None:
        """
        A command with C{{port}} needs no template; its name defaults to the
        program's.
        """
        spec = parse_broker("/usr/sbin/mosquitto -p {port}")
        self.assertEqual((spec.name, spec.kind, spec.config), ("mosquitto", "command", None))
        self.assertEqual(
            broker_argv(spec, 18123, None, "python"), ["/usr/sbin/mosquitto", "-p", "18123"]
        )

    def test_command_without_placeholders(self) -> None:
        """
        A command that cannot be told its port is refused.
        """
        with self.assertRaises(BrokerError) as raised:
            parse_broker("mybroker --fast")
        self.assertIn("{port} or {config}", str(raised.exception))

    def test_command_config_without_template(self) -> None:
        """
        C{{config}} without a template is refused, naming C{--broker-config}.
        """
        with self.assertRaises(BrokerError) as raised:
            parse_broker("nosuch=nosuch -c {config}")
        self.assertIn("--broker-config nosuch=FILE", str(raised.exception))

    def test_explicit_config(self) -> None:
        """
        C{--broker-config NAME=FILE} is that broker's template.
        """
        path = Path(self.mktemp())
        path.write_text("port {port}\n")
        configs = parse_broker_configs([f"mine={path}"])
        self.assertEqual(parse_broker("mine=mine -c {config}", configs).config, path)
        with self.assertRaises(BrokerError):
            parse_broker_configs(["mine"])
        with self.assertRaises(BrokerError):
            parse_broker_configs(["mine=/nonexistent"])

    def test_external(self) -> None:
        """
        C{HOST:PORT[/PID]} is a running broker; C{localhost} means 127.0.0.1.
        """
        self.assertEqual(
            parse_broker("127.0.0.1:1883/42"),
            BrokerSpec("127.0.0.1:1883", "external", host="127.0.0.1", port=1883, pid=42),
        )
        spec = parse_broker("prod=localhost:1884")
        self.assertEqual(
            (spec.name, spec.host, spec.port, spec.pid), ("prod", "127.0.0.1", 1884, None)
        )
        self.assertFalse(spec.managed)

    def test_mqttx_argv(self) -> None:
        """
        mqttx runs under twistd in the foreground, without a pidfile, with
        the rendered configuration.
        """
        argv = broker_argv(parse_broker("mqttx"), 18001, Path("/x/mqttx.yaml"), "/usr/bin/python3")
        self.assertEqual(argv[:2], ["/usr/bin/python3", "-c"])
        self.assertIn("twistd", argv[2])
        self.assertEqual(argv[3:], ["-n", "--pidfile=", "mqttx", "--config", "/x/mqttx.yaml"])

    def test_render_template(self) -> None:
        """
        Only C{{port}} and C{{host}} are replaced; other braces stay.
        """
        self.assertEqual(
            render_template('endpoint: "tcp:{port}:interface={host}"\nx: {a: 1}\n', 18000),
            'endpoint: "tcp:18000:interface=127.0.0.1"\nx: {a: 1}\n',
        )

    def test_templates_render_to_their_port(self) -> None:
        """
        Every shipped template names the port it is given.
        """
        for template in sorted(CONFIGS.iterdir()):
            self.assertIn("18555", render_template(template.read_text(), 18555), template.name)


class LoadGeneratorTests(SynchronousTestCase):
    """
    Choosing the generator, its command line and reading its output.
    """

    def executable(self) -> str:
        path = Path(self.mktemp())
        path.write_text("#!/bin/sh\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return str(path)

    def test_mqload_from_environment(self) -> None:
        """
        C{MQLOAD} naming an executable selects mqload.
        """
        binary = self.executable()
        gen = find_generator("auto", environ={"MQLOAD": binary})
        self.assertEqual(gen, LoadGenerator("mqload", (os.path.realpath(binary),)))

    def test_fallback(self) -> None:
        """
        Without a usable C{MQLOAD}, C{auto} falls back to pyload.
        """
        for environ in ({}, {"MQLOAD": "/nonexistent/mqload"}):
            gen = find_generator("auto", environ=environ, python="/py")
            self.assertEqual(gen, LoadGenerator("pyload", ("/py", str(PYLOAD))))

    def test_mqload_required(self) -> None:
        """
        C{--generator mqload} without a binary is an error.
        """
        with self.assertRaises(GeneratorError):
            find_generator("mqload", environ={})

    def test_python_chosen_over_mqload(self) -> None:
        """
        C{--generator python} uses pyload even when mqload is there.
        """
        gen = find_generator("python", environ={"MQLOAD": self.executable()})
        self.assertEqual(gen.name, "pyload")

    def test_pubsub_argv(self) -> None:
        """
        A publish/subscribe run gets the address, level, the scenario's
        flags, the timing, the broker PID and pinning.
        """
        gen = LoadGenerator("mqload", ("/bin/mqload",))
        argv = generator_argv(
            gen,
            scenario("S1"),
            host="127.0.0.1",
            port=18001,
            mqtt=5,
            timing=Timing(10, 2, 5),
            smoke=False,
            broker_pid=42,
            label="S1/mqttx/1",
            pin=["taskset", "-c", "1"],
        )
        self.assertEqual(
            argv,
            ["taskset", "-c", "1", "/bin/mqload", "-H", "127.0.0.1", "-p", "18001", "-V", "5"]
            + ["--quiet", "-P", "10", "-S", "1", "--sub-mode", "wild", "-s", "64", "-q", "0"]
            + ["--window", "100", "-d", "10", "-w", "2", "--drain", "5"]
            + ["--broker-pid", "42", "--label", "S1/mqttx/1"],
        )

    def test_conn_argv_smoke(self) -> None:
        """
        The connect storm has no timing flags; smoke mode makes it small.
        """
        gen = LoadGenerator("mqload", ("mqload",))
        argv = generator_argv(
            gen,
            scenario("S5"),
            host="127.0.0.1",
            port=1,
            mqtt=4,
            timing=SMOKE_TIMING,
            smoke=True,
            broker_pid=None,
        )
        self.assertEqual(argv[argv.index("-c") + 1], "200")
        self.assertNotIn("-d", argv)
        self.assertNotIn("--broker-pid", argv)

    def test_timing(self) -> None:
        """
        Floods drain longer in full runs; smoke runs use the smoke timing;
        an override wins.
        """
        self.assertEqual(timing_for(scenario("S1"), False), FULL_TIMING)
        self.assertEqual(timing_for(scenario("flood"), False).drain, FLOOD_DRAIN)
        self.assertEqual(timing_for(scenario("flood"), True), SMOKE_TIMING)
        self.assertEqual(timing_for(scenario("S1"), True, Timing(1, 1, 1)), Timing(1, 1, 1))

    def test_parse_output(self) -> None:
        """
        The result is the last JSON line from mqload or pyload; other
        lines are ignored.
        """
        out = 'mqload: connection pub0 lost\n{"not": "a result"}\n' + MQLOAD_PUBSUB + "\n\n"
        result = parse_output(out)
        self.assertEqual((result["tool"], result["recv_rate"]), ("mqload", 171784.0))
        self.assertEqual(parse_output(MQLOAD_CONN)["connected"], 2000)

    def test_parse_output_without_result(self) -> None:
        """
        Output without a result line is an error quoting the last line.
        """
        with self.assertRaises(GeneratorError) as raised:
            parse_output('{"tool": "other"}\nSegmentation fault\n')
        self.assertIn("Segmentation fault", str(raised.exception))
        with self.assertRaises(GeneratorError):
            parse_output("")


class ScenarioTests(SynchronousTestCase):
    """
    Figures and checks of each scenario.
    """

    def test_pubsub_metrics(self) -> None:
        """
        Throughput, CPU per message, latency, delivery ratio and RSS growth
        come from the result.
        """
        m = extract_metrics(scenario("S1"), json.loads(MQLOAD_PUBSUB))
        self.assertEqual(m["rate"], 171784.0)
        self.assertEqual(m["cpu_us"], 5.744)
        self.assertAlmostEqual(m["p99_ms"] or 0, 9.601)
        self.assertEqual(m["delivered_pct"], 100.0)
        self.assertAlmostEqual(m["rss_growth_mb"] or 0, (55964 - 55756) / 1024)
        self.assertEqual(m["mbps"], 10.994)

    def test_missing_figures_are_none(self) -> None:
        """
        Figures the generator could not measure (-1: no broker PID; null
        latency) are C{None}, not numbers.
        """
        raw = pubsub(broker_cpu_us_per_msg=-1.0, broker_rss_kb_start=-1, ack_rate=5.0)
        raw["latency_us"] = {"n": 0, "p50": None, "p99": None}
        m = extract_metrics(scenario("flood-q1"), raw)
        self.assertIsNone(m["cpu_us"])
        self.assertIsNone(m["rss_growth_mb"])
        self.assertIsNone(m["p99_ms"])
        self.assertAlmostEqual(m["ack_per_delivery"] or 0, 5.0 / 171784.0)

    def test_conn_metrics(self) -> None:
        """
        The connect storm reports connect time and bytes per connection.
        """
        m = extract_metrics(scenario("S5"), json.loads(MQLOAD_CONN))
        self.assertEqual(m, {"connect_s": 1.175, "bytes_per_conn": 4174.0})

    def test_clean_run(self) -> None:
        """
        A complete run without loss has no problems and no notes.
        """
        self.assertEqual(check(scenario("S1"), pubsub()), ([], []))

    def test_capped_loss_is_a_problem(self) -> None:
        """
        Capped scenarios must lose nothing, QoS 0 included.
        """
        for name in ("S1", "S3", "S6"):
            problems, _ = check(scenario(name), pubsub(lost=6, expected=5000))
            self.assertEqual([(p.kind, p.text) for p in problems], [("lost", "lost 6 of 5000")])

    def test_open_loop_loss_is_a_note(self) -> None:
        """
        What an open-loop flood left undelivered is noted, not failed.
        """
        for name in ("flood", "flood-q1"):
            problems, notes = check(scenario(name), pubsub(lost=10, expected=20))
            self.assertEqual(problems, [])
            self.assertEqual([n.kind for n in notes], ["undelivered"])

    def test_flood_targets(self) -> None:
        """
        A flood fails below issue 4's targets: under 90 % delivered by the
        end of the drain, RSS grown by more than 64 MB, more than 1.1
        PUBACKs per delivery. Capped scenarios are not held to them.
        """
        raw = pubsub(
            expected=1000,
            unique=899,
            lost=101,
            broker_rss_kb_start=1024,
            broker_rss_kb_end=1024 + 65 * 1024,
            recv_rate=1000.0,
            ack_rate=1200.0,
        )
        problems = check(scenario("flood-q1"), raw)[0]
        self.assertEqual(
            [(p.kind, p.text) for p in problems],
            [
                ("flood-delivered", "delivered 89.9 % < 90 %"),
                ("flood-memory", "RSS grew 65.0 MB > 64 MB"),
                ("ack-ahead", "1.20 PUBACKs per delivery > 1.1"),
            ],
        )
        ok = pubsub(expected=1000, unique=900, lost=100, recv_rate=1000.0, ack_rate=1100.0)
        self.assertEqual(check(scenario("flood-q1"), ok)[0], [])
        self.assertEqual([p.kind for p in check(scenario("S1"), raw)[0]], ["lost"])

    def test_duplicates(self) -> None:
        """
        Duplicates fail capped runs and QoS 1 floods, not QoS 0 floods.
        """
        self.assertEqual([p.kind for p in check(scenario("S3"), pubsub(dup=2))[0]], ["dup"])
        self.assertEqual([p.kind for p in check(scenario("flood-q1"), pubsub(dup=2))[0]], ["dup"])
        self.assertEqual(check(scenario("flood"), pubsub(dup=2))[0], [])

    def test_incomplete_runs(self) -> None:
        """
        Aborted runs, lost connections, protocol errors and empty runs fail.
        """
        raw = pubsub(aborted=True, abort_reason="max-time", disconnects=1, proto_err=3, unique=0)
        kinds = [p.kind for p in check(scenario("flood"), raw)[0]]
        self.assertEqual(kinds, ["aborted", "disconnects", "proto_err", "nothing"])

    def test_connect_storm_checks(self) -> None:
        """
        A storm fails unless every connection was made and kept.
        """
        raw = json.loads(MQLOAD_CONN)
        self.assertEqual(check(scenario("S5"), raw), ([], []))
        raw.update(connected=1990, failed=10, dropped_during_hold=2)
        kinds = [p.kind for p in check(scenario("S5"), raw)[0]]
        self.assertEqual(kinds, ["connections", "failed", "dropped_during_hold"])

    def test_contention(self) -> None:
        """
        CPU busy time beyond the broker's and the generator's own is noted.
        """
        self.assertIsNone(contention_note(pubsub(), "0", "1"))
        raw = pubsub(self_cpu_pct=3.0)
        raw["cpus"] = [{"busy_pct": 99.0}, {"busy_pct": 60.0}]
        note = contention_note(raw, "0", "1")
        self.assertEqual(
            note, "other processes competed for the CPUs: CPU 1 60% busy, generator 3%"
        )
        self.assertIsNone(contention_note(raw, "0-1", "2"))


class SummaryTests(SynchronousTestCase):
    """
    Medians, ratios and the tables.
    """

    def test_stats(self) -> None:
        """
        Median, min and max ignore missing values.
        """
        self.assertEqual(stats([3.0, None, 1.0, 2.0]), Stats(2.0, 1.0, 3.0, 3))
        self.assertEqual(stats([4.0, 1.0]), Stats(2.5, 1.0, 4.0, 2))
        self.assertIsNone(stats([None]))

    def test_ratio(self) -> None:
        """
        A ratio divides medians; a missing side or a zero denominator gives
        none.
        """
        self.assertEqual(ratio(Stats(3, 1, 5, 3), Stats(6, 6, 6, 1)), 0.5)
        self.assertIsNone(ratio(None, Stats(1, 1, 1, 1)))
        self.assertIsNone(ratio(Stats(1, 1, 1, 1), Stats(0, 0, 0, 1)))

    def test_formats(self) -> None:
        """
        Figures show median (min–max) with separators; ratios two decimals
        below 10.
        """
        self.assertEqual(
            format_stats(Stats(171784, 160000, 175000.4, 3), 0), "171,784 (160,000–175,000)"
        )
        self.assertEqual(format_stats(Stats(5.5, 5.5, 5.5, 3), 2), "5.50")
        self.assertEqual(format_stats(None, 0), "–")
        self.assertEqual(
            (format_ratio(0.456), format_ratio(22.34), format_ratio(None)), ("0.46", "22.3", "–")
        )

    def test_parse_ratio(self) -> None:
        """
        Ratios name two different brokers under test.
        """
        self.assertEqual(parse_ratio("a/b", ["a", "b"]), ("a", "b"))
        for bad in ("a", "a/", "a/a", "a/c"):
            with self.assertRaises(ValueError):
                parse_ratio(bad, ["a", "b"])
        self.assertEqual(default_ratios(["a", "b", "c"]), [("b", "a"), ("c", "a")])
        self.assertEqual(default_ratios(["a"]), [])

    def test_metric_table(self) -> None:
        """
        One row per scenario figure, brokers as columns, then ratios of
        medians.
        """
        records = [
            record("S1", "mosquitto", rate=200000.0, cpu_us=5.0),
            record("S1", "mqttx", rate=100000.0, cpu_us=10.0),
            record("S1", "mosquitto", rate=180000.0, cpu_us=5.5),
            record("S1", "mqttx", rate=120000.0, cpu_us=9.0),
            {"scenario": "S1", "broker": "mqttx", "error": "did not start", "metrics": {}},
        ]
        table = metric_table(records).splitlines()
        self.assertEqual(
            table[0], "| scenario | figure | better | mosquitto | mqttx | mqttx/mosquitto |"
        )
        self.assertEqual(
            table[2],
            "| S1 | msg/s | higher | 190,000 (180,000–200,000) | 110,000 (100,000–120,000) | 0.58 |",
        )
        self.assertEqual(
            table[3],
            "| S1 | broker CPU µs/msg | lower | 5.25 (5.00–5.50) | 9.50 (9.00–10.00) | 1.81 |",
        )
        self.assertEqual(len(table), 4)

    def test_metric_table_orders_scenarios(self) -> None:
        """
        Scenarios appear in the standard order whatever the record order,
        and a broker without a figure shows a dash.
        """
        records = [record("S5", "a", connect_s=1.0), record("S1", "a", rate=1.0)]
        rows = [line.split(" | ")[0] for line in metric_table(records, ["a", "b"]).splitlines()[2:]]
        self.assertEqual(rows, ["| S1", "| S1", "| S5", "| S5"])
        self.assertIn("| – |", metric_table(records, ["a", "b"]))

    def test_checks_table(self) -> None:
        """
        The checks table counts failed runs and shows the first failure; a
        single run's notes are shown as they are.
        """
        records = [
            record("S6", "mqttx") | {"ok": False, "problems": ["lost 6 of 900"]},
            record("S6", "mqttx"),
            record("S6", "mosquitto") | {"notes": ["tolerated: lost 1 of 2"]},
        ]
        self.assertEqual(
            checks_table(records).splitlines()[2],
            "| S6 | 1/2 failed: lost 6 of 900 | ok; notes: tolerated: lost 1 of 2 |",
        )

    def test_checks_table_counts_note_kinds(self) -> None:
        """
        Over several runs, notes are counted by kind.
        """
        lost = {"notes": ["lost 5 of 9", "CPU 1 busy"], "note_kinds": ["lost", "contention"]}
        records = [
            record("flood", "a") | lost,
            record("flood", "a") | {"notes": ["lost 4 of 9"], "note_kinds": ["lost"]},
            record("flood", "a"),
        ]
        self.assertEqual(
            checks_table(records).splitlines()[2],
            "| flood | ok (3/3); notes: lost 2/3; contention 1/3 |",
        )

    def test_load_records(self) -> None:
        """
        Saved output yields the run records and skips everything else.
        """
        lines = [json.dumps(record("S1", "a")), "| table |", "{broken", MQLOAD_PUBSUB, ""]
        self.assertEqual(load_records(lines), [record("S1", "a")])

    def test_summarize_saved_runs(self) -> None:
        """
        C{--summarize FILE} prints the summary of saved JSON lines and runs
        nothing; C{--ratio} names brokers of the saved runs.
        """
        path = Path(self.mktemp())
        path.write_text(
            "\n".join(
                json.dumps(r | {"round": 1, "generator": "mqload", "mqtt": 4})
                for r in (record("S1", "a", rate=2.0), record("S1", "b", rate=3.0))
            )
        )
        out = io.StringIO()
        self.assertEqual(main(["--summarize", str(path)], out=out), 0)
        text = out.getvalue()
        self.assertIn("2 runs, 1 round(s), generator mqload", text)
        self.assertIn("| S1 | msg/s | higher | 2 | 3 | 1.50 |", text)
        out = io.StringIO()
        self.assertEqual(main(["--summarize", str(path), "--ratio", "a/b"], out=out), 0)
        self.assertIn("| scenario | figure | better | a | b | a/b |", out.getvalue())
        self.assertIn("| S1 | msg/s | higher | 2 | 3 | 0.67 |", out.getvalue())
        err = io.StringIO()
        self.assertEqual(main(["--summarize", str(path), "--ratio", "a/c"], err=err), 2)
        self.assertIn("'c' is not one of a, b", err.getvalue())

    def test_list(self) -> None:
        """
        C{--list} names every scenario.
        """
        out = io.StringIO()
        self.assertEqual(main(["--list"], out=out), 0)
        self.assertEqual(
            [line.split()[0] for line in out.getvalue().splitlines()], [s.name for s in SCENARIOS]
        )


class PyloadTests(SynchronousTestCase):
    """
    The fallback generator's pure parts.
    """

    def test_flags(self) -> None:
        """
        pyload reads mqload's flags: C{-q} sets both QoS, topics default to
        the publisher count, an unset max time is derived.
        """
        o = pyload.parse_args(["-P", "10", "-S", "1", "--sub-mode", "wild", "-q", "1", "-d", "3"])
        self.assertEqual((o.pub_qos, o.sub_qos, o.topics, o.sub_mode), (1, 1, 10, "wild"))
        self.assertEqual(o.max_time, o.connect_timeout + o.warmup + 3 + o.drain + 30)

    def test_scenario_flags_are_understood(self) -> None:
        """
        pyload accepts every scenario's flags, full and smoke.
        """
        for s in SCENARIOS:
            for smoke in (False, True):
                pyload.parse_args(["-p", "1", *s.generator_flags(smoke), "-d", "1"])

    def test_packets(self) -> None:
        """
        CONNECT and SUBSCRIBE are encoded as MQTT 3.1.1 and 5.0 expect.
        """
        self.assertEqual(
            pyload.connect_packet("c", 4, 60), b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c"
        )
        self.assertEqual(
            pyload.connect_packet("c", 5, 60), b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x01c"
        )
        self.assertEqual(pyload.subscribe_packet(["t"], 1, 4), b"\x82\x06\x00\x01\x00\x01t\x01")
        self.assertEqual(pyload.varint(321), b"\xc1\x02")

    def test_remaining_length(self) -> None:
        """
        A Remaining Length is read where it starts: its value and the index
        after it, -1 if the bytes end first; over four bytes is an error.
        """
        data = b"\x30\xc1\x02rest"
        self.assertEqual(pyload.remaining_length(data, 1, len(data)), (321, 3))
        self.assertEqual(pyload.remaining_length(data, 1, 2), (-1, 2))
        with self.assertRaises(ValueError):
            pyload.remaining_length(b"\x30\xff\xff\xff\xff\x01", 1, 6)

    def test_percentiles(self) -> None:
        """
        Latency percentiles are in microseconds, nearest rank, like mqload.
        """
        p = pyload.percentiles([i * 1000 for i in range(1, 101)])
        self.assertEqual(
            (p["n"], p["p50"], p["p99"], p["max"], p["mean"]), (100, 50.0, 99.0, 100.0, 50.5)
        )
        self.assertEqual(pyload.percentiles([])["p99"], None)
