"""The PL/pgSQL parts of chancy's schema: the release of workflow steps.

A workflow step waits (``blocked``) until its parents finish. Whatever finishes a parent
(a worker's outcome, ``complete_in``, ``cancel_job``, the rescuer giving up on an expired
lease, the deletion of an unfinished step with its queue), the same statement releases
or cancels its children: a trigger on ``chancy_jobs``, so no path can forget it and no
polling loop is needed.

- A parent that ``succeeded`` takes one off each child's ``waiting_on``; a child with
  none left is released: ``pending`` (``scheduled`` if its ``scheduled_at`` is still to
  come), and its queue's workers are woken (``pushed``).
- A parent that ``failed`` or was ``cancelled`` (or deleted unfinished) does the same for
  its ``always`` children, and cancels the others and their descendants through other
  steps that are not ``always`` (one statement, whatever the depth), each saying which
  upstream step failed; the trigger fires for each of those in turn, which releases their
  own ``always`` children.
- Two parents of one child finishing at the same instant on two workers update the child
  row in turn (the second waits for the first's commit and sees its count): the child is
  released exactly once.

The trigger's ``WHEN`` clause keeps plain jobs (``workflow_id`` NULL) out of it: their
outcomes pay one comparison per row. Its statements reach the children through the edges'
index and each child by its primary key (``id = ANY(ARRAY(...))``, per-row lookups), so
a release costs the same with 10 steps or 10 million rows, statistics or none.

Each constant is the version a migration created; the migration names the one it uses,
and :mod:`chancy.models` the newest (for ``metadata.create_all``). A later change goes in
a new constant and a new migration, never in an old one.
"""

from __future__ import annotations

from chancy.events import EVENTS_CHANNEL, FINISHED_IDS_PER_EVENT, EventKind

__all__ = ["RELEASE_STEPS_V1", "drop_release_steps"]

_FINISHED = "('cancelled', 'failed', 'succeeded')"

RELEASE_STEPS_V1 = (
    f"""
CREATE FUNCTION chancy_release_steps() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    parent chancy_jobs;
    outcome text;
    ready text[];
    cancelled bigint[];
BEGIN
    IF TG_OP = 'DELETE' THEN
        parent := OLD;
        outcome := 'was deleted';
    ELSE
        parent := NEW;
        outcome := NEW.state;
    END IF;
    WITH released AS (
        UPDATE chancy_jobs AS child
        SET waiting_on = child.waiting_on - 1,
            state = CASE
                WHEN child.waiting_on > 1 THEN 'blocked'
                WHEN child.scheduled_at > now() THEN 'scheduled'
                ELSE 'pending'
            END
        WHERE child.id = ANY (ARRAY(
                SELECT edge.child_id FROM chancy_workflow_edges AS edge
                WHERE edge.parent_id = parent.id
            ))
          AND child.state = 'blocked'
          AND (parent.state = 'succeeded' OR child.always)
        RETURNING child.queue, child.state
    )
    SELECT array_agg(DISTINCT queue) FILTER (WHERE state = 'pending') INTO ready
    FROM released;
    PERFORM pg_notify(
        '{EVENTS_CHANNEL}',
        json_build_object('event', '{EventKind.PUSHED.value}', 'queue', queue)::text
    )
    FROM unnest(ready) AS queue;
    IF parent.state = 'succeeded' THEN
        RETURN NULL;
    END IF;
    WITH RECURSIVE doomed (id) AS (
        SELECT edge.child_id
        FROM chancy_workflow_edges AS edge
        WHERE edge.parent_id = parent.id
          AND (SELECT child.state = 'blocked' AND NOT child.always
               FROM chancy_jobs AS child WHERE child.id = edge.child_id)
        UNION
        SELECT edge.child_id
        FROM doomed
        JOIN chancy_workflow_edges AS edge ON edge.parent_id = doomed.id
        WHERE (SELECT child.state = 'blocked' AND NOT child.always
               FROM chancy_jobs AS child WHERE child.id = edge.child_id)
    ), dropped AS (
        UPDATE chancy_jobs AS child
        SET state = 'cancelled',
            completed_at = now(),
            errors = child.errors || jsonb_build_array(jsonb_build_object(
                'at', now(),
                'type', 'UpstreamFailed',
                'message', format('upstream step %L %s', parent.step, outcome)
            ))
        WHERE child.id = ANY (ARRAY(SELECT id FROM doomed)) AND child.state = 'blocked'
        RETURNING child.id
    )
    SELECT array_agg(id) INTO cancelled FROM dropped;
    -- In events of {FINISHED_IDS_PER_EVENT} ids: a payload may not pass 8,000 bytes.
    PERFORM pg_notify(
        '{EVENTS_CHANNEL}',
        json_build_object('event', '{EventKind.FINISHED.value}', 'ids', json_agg(id))::text
    )
    FROM unnest(cancelled) WITH ORDINALITY AS cancelled_id (id, n)
    GROUP BY (n - 1) / {FINISHED_IDS_PER_EVENT};
    RETURN NULL;
END
$$;
""",
    f"""
CREATE TRIGGER chancy_release_steps
AFTER UPDATE OF state ON chancy_jobs
FOR EACH ROW
WHEN (
    NEW.workflow_id IS NOT NULL
    AND OLD.state IS DISTINCT FROM NEW.state
    AND NEW.state IN {_FINISHED}
)
EXECUTE FUNCTION chancy_release_steps();
""",
    f"""
CREATE TRIGGER chancy_release_steps_of_deleted
AFTER DELETE ON chancy_jobs
FOR EACH ROW
WHEN (OLD.workflow_id IS NOT NULL AND OLD.state NOT IN {_FINISHED})
EXECUTE FUNCTION chancy_release_steps();
""",
)
"""The release trigger as created by migration ``chancy_0008``: the function, then its two
triggers (a finished step; an unfinished step deleted)."""


def drop_release_steps() -> tuple[str, ...]:
    """The statements that remove :data:`RELEASE_STEPS_V1`."""
    return (
        "DROP TRIGGER IF EXISTS chancy_release_steps_of_deleted ON chancy_jobs",
        "DROP TRIGGER IF EXISTS chancy_release_steps ON chancy_jobs",
        "DROP FUNCTION IF EXISTS chancy_release_steps()",
    )
