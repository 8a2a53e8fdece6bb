"""The digital twin: network namespaces, real daemons (sshd, FRR, snmpd), services and probes."""
