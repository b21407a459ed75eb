"""The merger and the store sinks: from source events to civsync.person, civsync.conflicts
and idempotent, echo-free upserts into both stores."""
