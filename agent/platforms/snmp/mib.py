"""Owns the IF-MIB and SNMPv2-MIB object identifiers Cordon reads and sets, numeric (the drivers
load no MIB). Pure constants; imports nothing."""

from __future__ import annotations

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
IF_DESCR = "1.3.6.1.2.1.2.2.1.2"
IF_ADMIN = "1.3.6.1.2.1.2.2.1.7"
IF_OPER = "1.3.6.1.2.1.2.2.1.8"
IF_IN_OCTETS = "1.3.6.1.2.1.2.2.1.10"
IF_OUT_OCTETS = "1.3.6.1.2.1.2.2.1.16"
IF_NAME = "1.3.6.1.2.1.31.1.1.1.1"
IF_HC_IN = "1.3.6.1.2.1.31.1.1.1.6"
IF_HC_OUT = "1.3.6.1.2.1.31.1.1.1.10"
IF_IN_UCAST = "1.3.6.1.2.1.2.2.1.11"
IF_OUT_UCAST = "1.3.6.1.2.1.2.2.1.17"
IF_HC_IN_UCAST = "1.3.6.1.2.1.31.1.1.1.7"
IF_HC_OUT_UCAST = "1.3.6.1.2.1.31.1.1.1.11"
# IfCounters fields in order: in_octets, out_octets, in_ucast_pkts, out_ucast_pkts
HC_COUNTERS = (IF_HC_IN, IF_HC_OUT, IF_HC_IN_UCAST, IF_HC_OUT_UCAST)  # ifXTable, 64-bit
IF_COUNTERS = (IF_IN_OCTETS, IF_OUT_OCTETS, IF_IN_UCAST, IF_OUT_UCAST)  # ifTable, 32-bit
