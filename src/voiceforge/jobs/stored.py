"""What every job backend does the same way: job rows in the database, input files on disk.

The local and Celery backends differ only in how a queued job reaches a worker (``_queued``),
how a cancel reaches it, and how events are watched; submitting, reading and paging are here.
"""

from __future__ import annotations

import asyncio
import functools

from voiceforge.jobs.base import Job, JobPage, JobSpec, JobState, new_job_id
from voiceforge.jobs.inputs import InputFiles
from voiceforge.jobs.store import JobStore


class StoredJobs:
    store: JobStore
    inputs: InputFiles
    max_queued: int

    async def _queued(self, job: Job) -> None:
        """Hand a newly created job to the workers."""
        raise NotImplementedError

    async def submit(
        self, spec: JobSpec, *, owner: str, idempotency_key: str | None, base_url: str
    ) -> tuple[Job, bool]:
        job_id = new_job_id()
        if spec.inputs:
            await asyncio.to_thread(self.inputs.save, job_id, spec.inputs)
        created = False
        try:
            job, created = await asyncio.to_thread(
                functools.partial(
                    self.store.create,
                    spec,
                    job_id=job_id,
                    owner=owner,
                    idempotency_key=idempotency_key,
                    base_url=base_url,
                    max_queued=self.max_queued,
                )
            )
        finally:
            if spec.inputs and not created:  # refused, or the key named an earlier job
                await asyncio.to_thread(self.inputs.remove, job_id)
        if created:
            await self._queued(job)
        return job, created

    async def get(self, job_id: str) -> Job:
        return await asyncio.to_thread(self.store.get, job_id)

    async def find(self, owner: str, idempotency_key: str) -> Job | None:
        return await asyncio.to_thread(self.store.find, owner, idempotency_key)

    async def recent(
        self, *, owner: str | None, state: JobState | None, limit: int, before: str | None
    ) -> JobPage:
        return await asyncio.to_thread(
            functools.partial(self.store.page, owner=owner, state=state, limit=limit, before=before)
        )

    async def counts(self) -> dict[str, int]:
        return await asyncio.to_thread(self.store.counts)
