"""Pure parsing and checks of the drivers, on text captured from the twin (FRR, nft, ip) and on
IOS output as Cisco prints it: no device, no twin."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.drivers.base import Expectation, Facts, InterfaceState, mismatches
from agent.platforms.cisco_ios import parse as ios_parse
from agent.platforms.linux_nftables import parse as nft_parse
from agent.platforms.linux_nftables.driver import nft_remove, nft_replace
from agent.platforms.snmp import parse as snmp_parse
from agent.platforms.snmp.driver import admin_text, interfaces_from_columns
from agent.platforms.snmp.mib import IF_ADMIN, IF_DESCR, IF_HC_IN, IF_IN_OCTETS, IF_NAME, IF_OPER

DATA = Path(__file__).parent / "data"

IOS_BRIEF = """\
sw1#show ip interface brief
Interface              IP-Address      OK? Method Status                Protocol
GigabitEthernet0/0     10.0.0.1        YES NVRAM  up                    up
GigabitEthernet0/1     unassigned      YES unset  administratively down down
GigabitEthernet0/2     unassigned      YES unset  down                  down
Vlan110                10.1.10.1       YES NVRAM  up                    up
sw1#"""

IOS_SHOW_INTERFACES = """\
GigabitEthernet0/1 is administratively down, line protocol is down
  Hardware is iGbE, address is 5254.0012.3456 (bia 5254.0012.3456)
     1234 packets input, 567890 bytes, 0 no buffer
     4321 packets output, 98765 bytes, 0 underruns
GigabitEthernet0/2 is down, line protocol is down
  Hardware is iGbE
GigabitEthernet0/3 is up, line protocol is up (connected)
     10 packets input, 2000 bytes, 0 no buffer
"""


def read(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def by_name(ifs: tuple[InterfaceState, ...]) -> dict[str, InterfaceState]:
    return {i.name: i for i in ifs}


def test_frr_brief_gives_admin_state_of_every_interface() -> None:
    """FRR's `show interface brief` (captured on rns-sw1 with gi1 shut) gives admin states only."""
    ifs = by_name(ios_parse.parse_show_interface_brief(read("frr_show_interface_brief.txt")))
    assert ifs["gi1"].admin_up is False
    assert ifs["gi2"].admin_up is True
    assert ifs["mgmt0"].admin_up is True
    assert all(i.oper_up is None for i in ifs.values())


def test_ios_brief_separates_admin_down_from_oper_down() -> None:
    """IOS 'administratively down' is admin down; 'down/down' is admin up with the line down."""
    ifs = by_name(ios_parse.parse_show_interface_brief(IOS_BRIEF))
    assert (ifs["GigabitEthernet0/0"].admin_up, ifs["GigabitEthernet0/0"].oper_up) == (True, True)
    assert (ifs["GigabitEthernet0/1"].admin_up, ifs["GigabitEthernet0/1"].oper_up) == (False, False)
    assert (ifs["GigabitEthernet0/2"].admin_up, ifs["GigabitEthernet0/2"].oper_up) == (True, False)
    assert "sw1#" not in ifs


def test_brief_without_a_header_is_refused() -> None:
    """Output that is not an interface table raises ValueError rather than an empty list."""
    with pytest.raises(ValueError, match="header"):
        ios_parse.parse_show_interface_brief("% Unknown command: show interface brief")


def test_frr_show_interface_gives_admin_oper_and_index() -> None:
    """FRR's full `show interface` gives admin and oper state and the kernel ifindex."""
    ifs = by_name(ios_parse.parse_show_interface(read("frr_show_interface.txt")))
    assert ifs["gi1"].admin_up is False and ifs["gi1"].oper_up is False
    assert ifs["gi2"].admin_up is True and ifs["gi2"].oper_up is True
    assert ifs["gi0.110"].index == 3
    assert ifs["lo"].oper_up is True  # link detection off: the RUNNING flag decides


def test_ios_show_interfaces_gives_states_and_counters() -> None:
    """IOS `show interfaces` states and byte counters are read per interface."""
    ifs = by_name(ios_parse.parse_show_interface(IOS_SHOW_INTERFACES))
    g1, g2, g3 = ifs["GigabitEthernet0/1"], ifs["GigabitEthernet0/2"], ifs["GigabitEthernet0/3"]
    assert (g1.admin_up, g1.oper_up, g1.in_octets, g1.out_octets) == (False, False, 567890, 98765)
    assert (g2.admin_up, g2.oper_up) == (True, False)
    assert (g3.admin_up, g3.oper_up, g3.in_octets) == (True, True, 2000)


def test_ip_link_json_gives_states_and_counters() -> None:
    """`ip -j -s link` gives admin (UP flag), oper (operstate) and 64-bit byte counters."""
    ifs = by_name(nft_parse.parse_ip_link_json(read("ip_link_stats.json")))
    assert ifs["lo"].admin_up and ifs["lo"].oper_up  # operstate UNKNOWN but LOWER_UP
    assert ifs["lan0.110"].admin_up and ifs["lan0.110"].oper_up
    assert ifs["lan0.110"].in_octets is not None and ifs["lan0.110"].index is not None


def test_ip_link_json_refuses_garbage() -> None:
    """Non-JSON output raises ValueError naming the command."""
    with pytest.raises(ValueError, match="ip -j link"):
        nft_parse.parse_ip_link_json("Cannot open netlink socket")


def test_nft_json_lists_our_rules_with_comments() -> None:
    """`nft -j list table inet cordon` parses into chains and rules with their comments."""
    rs = nft_parse.parse_nft_json(read("nft_list_table_cordon.json"))
    assert rs.has_table("inet", "cordon")
    assert [c.name for c in rs.chains_of("inet", "cordon")] == ["forward"]
    assert sorted(r.comment or "" for r in rs.rules_of("inet", "cordon")) == [
        "cordon:established",
        "cordon:t-ehr",
    ]
    assert nft_parse.parse_nft_json("").tables == ()


def test_extract_nft_table_finds_only_our_block() -> None:
    """Our table's block is cut out of a full ruleset; the twin's table is not part of it."""
    ruleset = read("nft_list_ruleset.txt")
    ours = nft_parse.extract_nft_table(ruleset)
    assert ours is not None
    assert ours.startswith("table inet cordon {") and ours.rstrip().endswith("}")
    assert "twin_base" not in ours and 'comment "cordon:t-ehr"' in ours
    assert nft_parse.extract_nft_table(ruleset, "inet", "nope") is None


@pytest.mark.parametrize(
    "script",
    [
        ["flush ruleset"],
        ["table inet twin_base { }"],
        ["delete table inet twin_base"],
        ["add rule inet filter input drop"],
        ["table cordon { }"],  # no family: would be `ip cordon`
        ["table ip cordon { }"],
        ['include "/etc/nftables.conf"'],
        ["table inet cordon { }", "flush ruleset"],
        ["table inet cordon { }; delete table inet twin_base"],
        ["list ruleset"],
        ["table inet cordon {", "  chain c { }"],  # unbalanced
        [],
    ],
)
def test_nft_scope_refuses_anything_but_our_table(script: list[str]) -> None:
    """An nft script naming another table, the whole ruleset, or malformed is refused."""
    with pytest.raises(ValueError):
        nft_parse.check_nft_scope(script)


def test_nft_scope_accepts_our_change_sets() -> None:
    """Replace and remove change sets, and add/delete rule lines on our table, are accepted."""
    nft_parse.check_nft_scope(
        nft_replace(
            ["chain forward { type filter hook forward priority 0; }", "# comment"]
        ).commands
    )
    nft_parse.check_nft_scope(nft_remove().commands)
    nft_parse.check_nft_scope(
        [
            'add rule inet cordon forward ip daddr 198.18.0.1 drop comment "a; b { c"',
            "delete rule inet cordon forward handle 7",
        ]
    )


def test_nft_replace_is_one_atomic_script_on_our_table() -> None:
    """`nft_replace` creates, deletes and redefines our table in one script, nothing else."""
    cs = nft_replace(["chain c { }"], action="contain")
    assert cs.commands[:3] == (
        "table inet cordon",
        "delete table inet cordon",
        "table inet cordon {",
    )
    assert cs.commands[-1] == "}" and cs.action == "contain"


def test_cli_error_pattern_matches_frr_and_ios_rejections() -> None:
    """FRR's `% Unknown command` and IOS's `% Invalid input` are errors; normal output is not."""
    assert ios_parse.cli_error("sw(config)# foo\n% Unknown command: foo\nsw(config)#") == (
        "% Unknown command: foo"
    )
    assert ios_parse.cli_error("           ^\n% Invalid input detected at '^' marker.\n")
    assert ios_parse.cli_error("% Incomplete command.") is not None
    assert ios_parse.cli_error("sw(config-if)# shutdown\nsw(config-if)#") is None


def test_snmp_change_lines_are_parsed_or_refused() -> None:
    """Only `ifAdminStatus <ifname> up|down` lines make an SNMP change set."""
    assert snmp_parse.parse_snmp_changes(["ifAdminStatus gi1 down", "ifAdminStatus Gi0/1 up"]) == [
        ("gi1", False),
        ("Gi0/1", True),
    ]
    for bad in (["ifAdminStatus gi1 testing"], ["set sysName x"], ["ifAdminStatus gi1;x down"], []):
        with pytest.raises(ValueError):
            snmp_parse.parse_snmp_changes(bad)


def test_snmp_columns_become_interfaces_with_counters() -> None:
    """Walked ifTable/ifXTable columns give names, states and 64-bit counters when present."""
    cols: dict[str, dict[int, object]] = {
        IF_DESCR: {1: "lo", 7: "gi2"},
        IF_NAME: {7: "gi2"},
        IF_ADMIN: {1: 1, 7: 2},
        IF_OPER: {1: 1, 7: 2},
        IF_IN_OCTETS: {1: 5, 7: 10},
        IF_HC_IN: {7: 2**40},
    }
    ifs = by_name(interfaces_from_columns(cols))
    assert ifs["gi2"] == InterfaceState("gi2", False, False, 7, 2**40, None)
    assert ifs["lo"].in_octets == 5
    assert admin_text(tuple(ifs.values())) == "ifAdminStatus lo up\nifAdminStatus gi2 down\n"


def test_mismatches_name_every_difference() -> None:
    """A read-back is compared part by part: interfaces, config lines present and absent."""
    facts = Facts(
        device="d",
        platform="cisco_ios",
        via="ssh",
        interfaces=(InterfaceState("gi1", False, False), InterfaceState("gi2", True, None)),
        config="interface gi1\n shutdown\n",
    )
    assert mismatches(facts, Expectation(admin_up={"gi1": False})) == []
    wrong = mismatches(
        facts,
        Expectation(
            admin_up={"gi1": True, "gi9": False},
            oper_up={"gi2": True},
            config_has=("shutdown", "description x"),
            config_lacks=("interface gi1",),
        ),
    )
    assert wrong == [
        "interface gi1: admin down, expected up",
        "interface gi9: not found",
        "interface gi2: oper state unknown",
        "missing line 'description x'",
        "unexpected line 'interface gi1'",
    ]
