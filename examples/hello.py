"""The seed's priority example, runnable as is: `python examples/hello.py`.

With no DSN (no dsn= and no CHANCY_DSN) chancy starts its embedded PostgreSQL. The three
jobs are pushed and read back. They are stored as ``hello.my_dummy_task`` (the script's
name), so a worker started in ``examples/`` runs them, the priority -10 job first, then 0,
then 10::

    cd examples && chancy worker -q default --allow 'hello.*'
"""

import asyncio
import logging

from chancy.app import Chancy
from chancy.executor import Job
from chancy.queue import Queue


def my_dummy_task(name: str):
    print(f"Hello, {name}!")


hello_world = Job.from_func(my_dummy_task, kwargs={"name": "world"})


async def main():
    async with Chancy(queues=[Queue(name="default", concurrency=10)]) as chancy:
        await chancy.migrate()
        refs = [
            await chancy.push("default", hello_world),
            await chancy.push("default", hello_world.with_priority(10)),
            await chancy.push("default", hello_world.with_priority(-10)),
        ]
        for ref in refs:
            job = await chancy.get_job(ref)
            print(f"pushed job {job.id}: {job.func}(**{dict(job.kwargs)}) priority={job.priority}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    asyncio.run(main())
