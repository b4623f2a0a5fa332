"""Facility meters over SNMP: profiles, the asyncio poller, `puewatch snmp probe`."""
