"""Group commit for receipts: many verified webhooks, one transaction, set-based SQL.

``ReceiptStore.accept`` takes one webhook in its own transaction with ~10 statements
per receipt (and one more transaction to clear its events from the outbox): at one
round trip each, a PostgreSQL store caps the API at a few hundred receipts per second.
``ReceiptBatcher.accept`` queues the webhook instead; one flusher takes everything
queued (nothing waits when the store is idle: a flush starts at once, and what arrives
while it runs is the next batch) and applies it as ``ReceiptStore.accept`` would, in
one transaction with one statement per step for the whole batch:

1. replay digests: expired ones dropped, known ones (or a digest twice in the batch)
   refused as replayed, the new ones inserted;
2. the messages the receipts name, locked (by provider message id, then through the
   attempt that carried it, then by our id);
3. which receipts are kept already ("once"), the new ones inserted, waiting ones linked,
   the costs they state written to their sent attempts (``store.receipt_costs``);
4. each touched message's history read back and its state settled; events to the outbox.

The rules are ``smsrelay.receipts``'s, applied in the order the webhooks arrived: a
webhook that names a message an earlier webhook of the batch named waits for the next
round of the same transaction, so every state change is its own event, as one by one.
A conflict with another process (the digest's unique index) rolls the batch back and
each webhook is taken alone through ``ReceiptStore.accept``. Events published by the
caller are dropped from the outbox by the next flush (``published``), not one
transaction each.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from smsrelay.errors import ReplayedReceipt, StoreRejected
from smsrelay.logging import get_logger
from smsrelay.models import Receipt, StatusEvent
from smsrelay.receipts import identity
from smsrelay.store.base import PendingEvent
from smsrelay.store.receipt_costs import cost_rows, record_costs
from smsrelay.store.receipts import (
    Accepted,
    ReceiptStore,
    _record,
    _row,
    decide,
    outbox_row,
    receipt_delay,
)
from smsrelay.store.schema import attempts, event_outbox, messages, receipt_digests, receipts

log = get_logger(__name__)

# At most this many webhooks per transaction (bounds IN lists and a flush's time).
MAX_BATCH = 500


@dataclass
class Incoming:
    """One verified webhook waiting for the next flush."""

    provider: str
    digest: str
    batch: Sequence[Receipt]
    now: datetime
    done: asyncio.Future[Accepted] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


EventPublish = Callable[[StatusEvent], Awaitable[None]]


class ReceiptBatcher:
    """Queues verified webhooks and published events; one task commits them in batches.

    With ``publish``, the events a flush committed are published right after it, in
    the order decided, and cleared from the outbox by the next flush; the webhooks'
    answers do not wait for the broker's confirms (the outbox holds the events until
    then: a failure or a crash leaves them to the drain, at least once).
    """

    def __init__(self, store: ReceiptStore, publish: EventPublish | None = None) -> None:
        self.store = store
        self.publish = publish
        self._sending: set[asyncio.Task[None]] = set()
        self._flushing = False
        self._queue: list[Incoming] = []
        self._published: list[int] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Transactions committed and webhooks in them (how much grouping the load gave).
        self.flushes = 0
        self.webhooks = 0

    async def accept(
        self, provider: str, digest: str, batch: Sequence[Receipt], now: datetime
    ) -> Accepted:
        """As ``ReceiptStore.accept`` (``ReplayedReceipt`` included), committed with others."""
        item = Incoming(provider, digest, batch, now)
        self._queue.append(item)
        self._kick()
        return await item.done

    def published(self, keys: Sequence[int]) -> None:
        """Drop these events from the outbox with the next flush (a crash before: sent again)."""
        if keys:
            self._published.extend(keys)
            self._kick()

    def idle(self) -> bool:
        """Nothing queued, committing, publishing or left to clear from the outbox."""
        return not (self._queue or self._published or self._sending or self._flushing)

    def _kick(self) -> None:
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Flush what is queued, publish what is committed, then stop the flusher."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._queue or self._published or self._sending:
            if self._sending:
                await asyncio.gather(*self._sending, return_exceptions=True)
            await self._flush()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue or self._published:
                await self._flush()

    async def _flush(self) -> None:
        items, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        keys, self._published = self._published, []
        self._flushing = True
        try:
            results = await self._commit(items, keys)
        except Exception as exc:  # the store is down: every waiting request hears it
            self._published[:0] = keys
            for item in items:
                if not item.done.done():
                    item.done.set_exception(exc)
            return
        finally:
            self._flushing = False
        self.flushes += 1
        self.webhooks += len(items)
        if self.publish is not None:
            events = [p for r in results if isinstance(r, Accepted) for p in r.events]
            if events:
                task = asyncio.create_task(self._send(events))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)
        for item, result in zip(items, results, strict=True):
            if item.done.done():
                continue
            if isinstance(result, Exception):
                item.done.set_exception(result)
            else:
                item.done.set_result(result)

    async def _send(self, pending: list[PendingEvent]) -> None:
        """Publish committed events (their frames leave in this order), then clear them."""
        assert self.publish is not None
        outcomes = await asyncio.gather(
            *(self.publish(p.event) for p in pending), return_exceptions=True
        )
        done = [p.key for p, outcome in zip(pending, outcomes, strict=True) if outcome is None]
        if len(done) < len(pending):
            error = next(o for o in outcomes if o is not None)
            log.warning("events_deferred", waiting=len(pending) - len(done), error=str(error))
        self.published(done)

    async def _commit(
        self, items: list[Incoming], keys: list[int]
    ) -> list[Accepted | ReplayedReceipt]:
        try:
            async with self.store.store._tx() as conn:
                if keys:
                    await conn.execute(delete(event_outbox).where(event_outbox.c.key.in_(keys)))
                results = await accept_batch(conn, items, self.store)
            self.store.observe([e for r in results if isinstance(r, Accepted) for e in r.events])
            return results
        except StoreRejected as exc:
            if not isinstance(exc.__cause__, IntegrityError) or not items:
                raise
        # Another process took one of these digests meanwhile: one by one, as before.
        log.info("receipt_batch_conflict", webhooks=len(items))
        self._published[:0] = keys
        out: list[Accepted | ReplayedReceipt] = []
        for item in items:
            try:
                out.append(
                    await self.store.accept(item.provider, item.digest, item.batch, item.now)
                )
            except ReplayedReceipt as exc:
                out.append(exc)
        return out


async def accept_batch(
    conn: AsyncConnection, items: Sequence[Incoming], store: ReceiptStore
) -> list[Accepted | ReplayedReceipt]:
    """Apply ``items`` in arrival order inside ``conn``'s transaction; one result each."""
    results: list[Accepted | ReplayedReceipt | None] = [None] * len(items)
    fresh = await _remember(conn, items, store, results)
    pending = fresh
    while pending:
        this_round, pending = _round(items, pending)
        await _apply_round(conn, items, this_round, results)
    return [r if r is not None else Accepted([], []) for r in results]


async def _remember(
    conn: AsyncConnection,
    items: Sequence[Incoming],
    store: ReceiptStore,
    results: list[Accepted | ReplayedReceipt | None],
) -> list[int]:
    """Insert the new digests; mark replays in ``results``; the indexes of the fresh items."""
    by_provider: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        by_provider[item.provider].append(i)
    known: set[tuple[str, str]] = set()
    for provider, indexes in by_provider.items():
        digests = list({items[i].digest for i in indexes})
        expired = min(items[i].now for i in indexes) - store.replay_window
        await conn.execute(
            delete(receipt_digests).where(
                receipt_digests.c.provider == provider,
                receipt_digests.c.digest.in_(digests),
                receipt_digests.c.at < expired,
            )
        )
        rows = await conn.execute(
            select(receipt_digests.c.digest).where(
                receipt_digests.c.provider == provider, receipt_digests.c.digest.in_(digests)
            )
        )
        known.update((provider, row.digest) for row in rows)
    fresh: list[int] = []
    for i, item in enumerate(items):
        if (item.provider, item.digest) in known:
            results[i] = ReplayedReceipt("this webhook was received before (replayed)")
        else:
            known.add((item.provider, item.digest))
            fresh.append(i)
    if fresh:
        await conn.execute(
            insert(receipt_digests),
            [
                {"provider": items[i].provider, "digest": items[i].digest, "at": items[i].now}
                for i in fresh
            ],
        )
    return fresh


def _names(item: Incoming) -> set[Hashable]:
    """What a webhook's receipts could name: their provider ids and our ids."""
    out: set[Hashable] = set()
    for r in item.batch:
        if r.provider_message_id:
            out.add(("pmid", item.provider, r.provider_message_id))
        if r.message_id:
            out.add(("id", r.message_id))
    return out


def _round(items: Sequence[Incoming], pending: list[int]) -> tuple[list[int], list[int]]:
    """Split ``pending`` so that no two webhooks of a round name the same message.

    A webhook waits when an earlier one (taken or waiting) names one of its messages,
    so each message sees its webhooks in the order they arrived.
    """
    blocked: set[Hashable] = set()
    now: list[int] = []
    later: list[int] = []
    for i in pending:
        names = _names(items[i])
        (later if names & blocked else now).append(i)
        blocked |= names
    return now, later


async def _apply_round(
    conn: AsyncConnection,
    items: Sequence[Incoming],
    indexes: list[int],
    results: list[Accepted | ReplayedReceipt | None],
) -> None:
    found = await _find_messages(conn, [items[i] for i in indexes])
    kept_ids, orphans = await _kept_identities(conn, [items[i] for i in indexes], found)
    rows: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    owners: dict[str, tuple[int, Row[Any]]] = {}
    billed: list[tuple[str, str, Receipt]] = []
    kept_of: dict[int, list[Receipt]] = {}
    for i in indexes:
        item = items[i]
        kept: list[Receipt] = []
        seen: set[Hashable] = set()
        for receipt in item.batch:
            message = _message_for(found, item.provider, receipt)
            key = _known_key(item.provider, receipt, message)
            if identity(receipt) in seen or (key is not None and key in kept_ids):
                continue
            seen.add(identity(receipt))
            if key is not None:
                kept_ids.add(key)
            kept.append(receipt)
            rows.append(_row(item.provider, receipt, message, item.now))
            if message is not None:
                owners.setdefault(message.id, (i, message))
                billed.append((message.id, item.provider, receipt))
                if (item.provider, receipt.provider_message_id) in orphans:
                    links.append(
                        {"m": message.id, "p": item.provider, "x": receipt.provider_message_id}
                    )
        kept_of[i] = kept
    if rows:
        await conn.execute(insert(receipts), rows)
    if links:
        await _link_many(conn, links)
    await record_costs(conn, cost_rows(billed))
    events = await _settle_many(conn, items, owners)
    for i in indexes:
        results[i] = Accepted(kept_of[i], events.get(i, []))


Found = dict[Hashable, Row[Any]]


async def _find_messages(conn: AsyncConnection, batch: Sequence[Incoming]) -> Found:
    """The messages the receipts name, locked, keyed as ``_names`` keys them."""
    found: Found = {}
    pmids: dict[str, set[str]] = defaultdict(set)
    ids: set[str] = set()
    for item in batch:
        for r in item.batch:
            if r.provider_message_id:
                pmids[item.provider].add(r.provider_message_id)
            if r.message_id:
                ids.add(r.message_id)
    for provider, wanted in pmids.items():
        rows = await conn.execute(
            select(messages)
            .where(messages.c.provider == provider, messages.c.provider_message_id.in_(wanted))
            .order_by(messages.c.id)
            .with_for_update()
        )
        for row in rows:
            found.setdefault(("pmid", provider, row.provider_message_id), row)
        missing = [p for p in wanted if ("pmid", provider, p) not in found]
        if missing:
            via = await conn.execute(
                select(attempts.c.provider_message_id, attempts.c.message_id).where(
                    attempts.c.provider == provider, attempts.c.provider_message_id.in_(missing)
                )
            )
            through = {row.provider_message_id: row.message_id for row in via}
            locked = await _lock_ids(conn, set(through.values()))
            for pmid, message_id in through.items():
                if message_id in locked:
                    found.setdefault(("pmid", provider, pmid), locked[message_id])
    for message_id, row in (await _lock_ids(conn, ids)).items():
        found[("id", message_id)] = row
    return found


async def _lock_ids(conn: AsyncConnection, ids: set[str]) -> dict[str, Row[Any]]:
    if not ids:
        return {}
    rows = await conn.execute(
        select(messages)
        .where(messages.c.id.in_(sorted(ids)))
        .order_by(messages.c.id)
        .with_for_update()
    )
    return {row.id: row for row in rows}


def _message_for(found: Found, provider: str, receipt: Receipt) -> Row[Any] | None:
    # As ReceiptStore: by provider id (directly or through an attempt), then by our id.
    if receipt.provider_message_id:
        row = found.get(("pmid", provider, receipt.provider_message_id))
        if row is not None:
            return row
    return found.get(("id", receipt.message_id)) if receipt.message_id else None


def _known_key(provider: str, receipt: Receipt, message: Row[Any] | None) -> Hashable | None:
    """The key ``_kept_identities`` files a kept copy of ``receipt`` under; None: none can be."""
    fields = (receipt.part, receipt.status.value, receipt.provider_status[:64], receipt.error_code)
    if receipt.provider_message_id:
        return ("pmid", provider, receipt.provider_message_id, *fields)
    if message is not None:
        return ("id", provider, message.id, *fields)
    return None


async def _kept_identities(
    conn: AsyncConnection, batch: Sequence[Incoming], found: Found
) -> tuple[set[Hashable], set[tuple[str, str]]]:
    """The ``_known_key`` of every receipt already kept that the batch could repeat,
    and the (provider, provider message id) of those kept with no message (to link)."""
    pmids: dict[str, set[str]] = defaultdict(set)
    ids: dict[str, set[str]] = defaultdict(set)
    for item in batch:
        for r in item.batch:
            if r.provider_message_id:
                pmids[item.provider].add(r.provider_message_id)
            else:
                message = _message_for(found, item.provider, r)
                if message is not None:
                    ids[item.provider].add(message.id)
    out: set[Hashable] = set()
    orphans: set[tuple[str, str]] = set()
    for provider, wanted in pmids.items():
        rows = await conn.execute(
            select(receipts).where(
                receipts.c.provider == provider, receipts.c.provider_message_id.in_(wanted)
            )
        )
        for row in rows:
            out.add(("pmid", provider, row.provider_message_id, *_fields(row)))
            if row.message_id is None:
                orphans.add((provider, row.provider_message_id))
    for provider, wanted in ids.items():
        rows = await conn.execute(
            select(receipts).where(
                receipts.c.provider == provider,
                receipts.c.provider_message_id.is_(None),
                receipts.c.message_id.in_(wanted),
            )
        )
        out.update(("id", provider, row.message_id, *_fields(row)) for row in rows)
    return out, orphans


def _fields(row: Row[Any]) -> tuple[Any, ...]:
    return (row.part, row.status, row.provider_status, row.error_code)


async def _link_many(conn: AsyncConnection, links: list[dict[str, Any]]) -> None:
    """Link receipts kept before their message was known (one statement, many rows)."""
    await conn.execute(
        update(receipts)
        .where(
            receipts.c.message_id.is_(None),
            receipts.c.provider == bindparam("p"),
            receipts.c.provider_message_id == bindparam("x"),
        )
        .values(message_id=bindparam("m")),
        links,
    )


async def _settle_many(
    conn: AsyncConnection, items: Sequence[Incoming], owners: dict[str, tuple[int, Row[Any]]]
) -> dict[int, list[PendingEvent]]:
    """Settle every touched message from its whole history; events by webhook index."""
    if not owners:
        return {}
    rows = await conn.execute(
        select(receipts).where(receipts.c.message_id.in_(list(owners))).order_by(receipts.c.key)
    )
    history: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        history[row.message_id].append(_record(row))
    changes: list[dict[str, Any]] = []
    decided: list[tuple[int, Any]] = []
    for message_id, (index, message) in owners.items():
        item = items[index]
        outcome = decide(message, item.provider, item.now, history[message_id])
        if outcome is not None:
            values, event = outcome
            # Bound names must differ from the columns they set (SQLAlchemy reserves those).
            changes.append({"b_id": message_id, **{f"b_{k}": v for k, v in values.items()}})
            decided.append((index, event))
    if not changes:
        return {}
    await conn.execute(
        update(messages)
        .where(messages.c.id == bindparam("b_id"))
        .values({k[2:]: bindparam(k) for k in changes[0] if k != "b_id"}),
        changes,
    )
    keys = await conn.execute(
        insert(event_outbox).returning(event_outbox.c.key, sort_by_parameter_order=True),
        [outbox_row(event, items[index].now) for index, event in decided],
    )
    sent = await _sent_times(conn, {(event.id, event.provider or "") for _, event in decided})
    out: dict[int, list[PendingEvent]] = defaultdict(list)
    for (index, event), key in zip(decided, keys.scalars().all(), strict=True):
        message = owners[event.id][1]
        provider = event.provider or ""
        when = sent.get((event.id, provider))
        delay = receipt_delay(message, provider, when, history[event.id])
        out[index].append(PendingEvent(int(key), event, delay))
    return out


async def _sent_times(
    conn: AsyncConnection, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], datetime]:
    """When each (message, provider) was last sent: the start of smsrelay_send_to_receipt."""
    if not keys:
        return {}
    rows = await conn.execute(
        select(
            attempts.c.message_id,
            attempts.c.provider,
            func.max(func.coalesce(attempts.c.finished_at, attempts.c.started_at)),
        )
        .where(attempts.c.message_id.in_({m for m, _ in keys}), attempts.c.outcome == "sent")
        .group_by(attempts.c.message_id, attempts.c.provider)
    )
    return {(m, p): t for m, p, t in rows if (m, p) in keys and t is not None}
