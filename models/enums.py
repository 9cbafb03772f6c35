"""Enumerations shared by the database, the inventory file, workflows and the CLI."""

from enum import StrEnum


class IpStatus(StrEnum):
    STANDBY = "standby"
    WARMING = "warming"
    ACTIVE = "active"
    QUARANTINE = "quarantine"
    RESTING = "resting"
    RETIRING = "retiring"


#: Statuses whose IPs carry traffic: the only ones rendered into a pool or picked by rotation.
SENDING_STATUSES = frozenset({IpStatus.WARMING, IpStatus.ACTIVE})


class WarmupPhase(StrEnum):
    WEEK_1 = "week_1"
    WEEK_2 = "week_2"
    WEEK_3 = "week_3"
    WEEK_4 = "week_4"
    WEEK_5 = "week_5"
    WEEK_6 = "week_6"


class IpPurpose(StrEnum):
    MARKETING = "marketing"
    TRANSACTIONAL = "transactional"


class MtaBackend(StrEnum):
    POWERMTA = "powermta"
    POSTFIX = "postfix"
