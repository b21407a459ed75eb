"""Each engine part's own SCRAM user on Kafka, with exactly the ACLs its work needs.

``ensure_users`` runs as the cluster's administrator (``[kafka]``: ``admin`` over SASL_SSL,
or ``ANONYMOUS`` on the local broker's PLAINTEXT listener, both super users): it sets each
part's SCRAM-SHA-512 credential (the password goes to the broker, which keeps only a salted
verifier), then makes each user's ACLs exactly ``part_acls``: missing ones are created, any
other ACL of that user is deleted, so the ACLs follow the settings (a prefix changed loses
its old grants). docs/security.md has the table.

Topic names follow ``[merge] topic_prefix`` (P): capture writes ``P.<store>.<schema>.<table>``
(granted as the PREFIXED pattern ``P.<store>.``), the merger's topics are ``MergeTopics``,
and the quarantine is ``civsync.quarantine`` whatever the prefix. Only the steward reads
the quarantine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from connectors.kafka.errors import RefusalWatch
from connectors.merge.records import MergeTopics
from connectors.merge.settings import MergeSettings
from connectors.quarantine import QUARANTINE_TOPIC
from connectors.settings import KAFKA_PARTS, KafkaSettings, KafkaUsersSettings

STORES = ("civil", "population")
SCRAM_ITERATIONS = 8192
CLUSTER = "kafka-cluster"  # the one cluster resource's name
# read_to_end's and ``civsync quarantine retry``'s throw-away consumer groups
READER_GROUPS = "civsync-reader-"
RETRY_GROUPS = "civsync-retry-"

_R, _W, _C = AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE
_D, _DC = AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS
_ENSURE = (_C, _D, _DC)  # what TopicAdmin.ensure needs on a topic: create, describe, check


@dataclass(frozen=True)
class Grant:
    """Operations ``operations`` allowed on the resources named ``name`` (exactly, or every
    name starting with it when ``prefixed``)."""

    resource: ResourceType
    name: str
    operations: tuple[AclOperation, ...]
    prefixed: bool = False

    def bindings(self, principal: str) -> list[AclBinding]:
        pattern = ResourcePatternType.PREFIXED if self.prefixed else ResourcePatternType.LITERAL
        return [
            AclBinding(
                self.resource, self.name, pattern, principal, "*", op, AclPermissionType.ALLOW
            )
            for op in self.operations
        ]


def _topic(name: str, *operations: AclOperation, prefixed: bool = False) -> Grant:
    return Grant(ResourceType.TOPIC, name, operations, prefixed)


def _group(name: str, *, prefixed: bool = False) -> Grant:
    return Grant(ResourceType.GROUP, name, (_R,), prefixed)


_IDEMPOTENT = Grant(ResourceType.BROKER, CLUSTER, (AclOperation.IDEMPOTENT_WRITE,))


def part_acls(part: str, merge: MergeSettings) -> list[Grant]:
    """What ``part`` (one of ``KAFKA_PARTS``) may do, under ``merge``'s topic prefix. Every
    part may use ``read_to_end``'s throw-away consumer groups (a librdkafka consumer must
    have a group, even one that only assigns partitions and commits nothing): what it reads
    is then decided by its topics' ACLs alone."""
    return [*_part_acls(part, merge), _group(READER_GROUPS, prefixed=True)]


def _part_acls(part: str, merge: MergeSettings) -> list[Grant]:
    prefix, topics = merge.topic_prefix, MergeTopics(merge.topic_prefix)
    sources = [f"{prefix}.{store}." for store in STORES]
    own = [
        topics.edits.name,
        topics.retry,
        topics.state.name,
        topics.person.name,
        topics.conflicts.name,
        topics.history.name,
    ]
    quarantine_write = _topic(QUARANTINE_TOPIC, _W, *_ENSURE)
    kind, _, store = part.partition("_")
    if kind == "capture" and store in STORES:
        return [
            _topic(f"{prefix}.{store}.", _W, *_ENSURE, prefixed=True),
            quarantine_write,
            _IDEMPOTENT,
        ]
    if part == "merger":
        return [
            *(_topic(source, _R, *_ENSURE, prefixed=True) for source in sources),
            *(_topic(name, _R, _W, *_ENSURE) for name in own),
            quarantine_write,
            _group(merge.group),
            Grant(ResourceType.TRANSACTIONAL_ID, f"{merge.group}-", (_W, _D), prefixed=True),
            _IDEMPOTENT,
        ]
    if kind == "sink" and store in STORES:
        retry = topics.sink_retry(store)
        return [
            _topic(topics.person.name, _R, *_ENSURE),
            _topic(retry, _R, *_ENSURE),
            # every sink ensures the merger's topics (MergeTopics.specs), reads none of them
            *(_topic(name, *_ENSURE) for name in own if name != topics.person.name),
            quarantine_write,
            _group(f"{prefix}-sink-{store}"),
            _IDEMPOTENT,
        ]
    if part == "steward":
        retries = [topics.retry, *(topics.sink_retry(s) for s in STORES)]
        return [
            _topic(QUARANTINE_TOPIC, _R, _D, _DC),
            _topic(topics.conflicts.name, _R, _D, _DC),
            # a decision is an edit (``civsync conflicts resolve``)
            _topic(topics.edits.name, _R, _W, _D, _DC),
            # ``civsync quarantine retry`` reads the quarantined input where it came from and
            # sends it again to the merger's or a sink's retry topic
            *(_topic(source, _R, _D, prefixed=True) for source in sources),
            _topic(topics.person.name, _R, _D),
            *(_topic(name, _R, _W, *_ENSURE) for name in retries),
            _group(RETRY_GROUPS, prefixed=True),
            _IDEMPOTENT,
        ]
    raise ValueError(f"no Kafka part {part!r}; the parts are {sorted(KAFKA_PARTS)}")


def principal(user: str) -> str:
    return f"User:{user}"


def acl_bindings(users: KafkaUsersSettings, merge: MergeSettings) -> list[AclBinding]:
    """Every ACL of every part's user."""
    return [
        binding
        for part in KAFKA_PARTS
        for grant in part_acls(part, merge)
        for binding in grant.bindings(principal(users.of(part).user))
    ]


def _key(binding: AclBinding) -> tuple[object, ...]:
    return (
        binding.restype,
        binding.name,
        binding.resource_pattern_type,
        binding.principal,
        binding.host,
        binding.operation,
        binding.permission_type,
    )


@dataclass(frozen=True)
class Provisioned:
    users: list[str]
    created: int  # ACLs created
    deleted: int  # ACLs of these users no longer wanted, deleted


def ensure_users(
    kafka: KafkaSettings,
    users: KafkaUsersSettings,
    merge: MergeSettings,
    timeout_s: float = 30.0,
) -> Provisioned:
    """As the administrator ``kafka`` logs in as: each part's SCRAM user, its password set
    again, and exactly its ACLs. Idempotent."""
    watch = RefusalWatch()
    admin = AdminClient(kafka.client_config() | {"error_cb": watch})
    names = [users.of(part).user for part in KAFKA_PARTS]
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(
            users.of(part).user, info, users.of(part).password.get_secret_value().encode()
        )
        for part in KAFKA_PARTS
    ]
    _wait(admin, watch, admin.alter_user_scram_credentials(upserts).values(), timeout_s, "users")
    wanted = {_key(b): b for b in acl_bindings(users, merge)}
    existing: dict[tuple[object, ...], AclBinding] = {}
    for name in names:
        found = admin.describe_acls(_filter(principal(name)), request_timeout=timeout_s)
        for binding in _wait(admin, watch, [found], timeout_s, f"ACLs of {name}")[0]:
            existing[_key(binding)] = binding
    stale = [binding for key, binding in existing.items() if key not in wanted]
    missing = [binding for key, binding in wanted.items() if key not in existing]
    if stale:
        filters = [_exact(binding) for binding in stale]
        deleted = admin.delete_acls(filters, request_timeout=timeout_s).values()
        _wait(admin, watch, deleted, timeout_s, "deleting stale ACLs")
    if missing:
        created = admin.create_acls(missing, request_timeout=timeout_s).values()
        _wait(admin, watch, created, timeout_s, "creating ACLs")
    return Provisioned(names, len(missing), len(stale))


def _filter(who: str) -> AclBindingFilter:
    return AclBindingFilter(
        ResourceType.ANY,
        None,  # type: ignore[arg-type]  # None matches any name; the stubs say str
        ResourcePatternType.ANY,
        who,
        None,  # type: ignore[arg-type]  # any host
        AclOperation.ANY,
        AclPermissionType.ANY,
    )


def _exact(binding: AclBinding) -> AclBindingFilter:
    return AclBindingFilter(*_key(binding))  # type: ignore[arg-type]  # the same 7 fields


def _wait(
    admin: AdminClient,
    watch: RefusalWatch,
    futures: Iterable[object],
    timeout_s: float,
    doing: str,
) -> list[list[AclBinding]]:
    results = []
    try:
        for future in futures:
            results.append(future.result(timeout=timeout_s))  # type: ignore[attr-defined]
    except KafkaException as exc:
        admin.poll(0)  # serve the error callbacks: a refused login or certificate
        raise watch.translate(exc, f"provisioning Kafka {doing}") from exc
    except TimeoutError as exc:
        admin.poll(0)
        raise watch.timed_out(f"provisioning Kafka {doing}", timeout_s) from exc
    return results
