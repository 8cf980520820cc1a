"""The weekly purge: empty the dynamic block list so that an attacker who spoofs many
sources cannot bloat the firewall, keep what the admin put there, re-assert the base rules,
reconcile the kernel with state, and mail what was removed and why.

Kept: permanent blocks (escalations, `block --permanent`), the deny list, the allow list.
"""

from __future__ import annotations

from nightwarden.lib.runner import Result

NAME = "purge"


def add_arguments(parser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--older-than",
        metavar="AGE",
        help="remove only dynamic blocks older than AGE (30m, 12h, 7d); default: blocks.purge_age (0 = all)",
    )
    group.add_argument("--all", action="store_true", help="remove every dynamic block")
    parser.add_argument("--no-mail", action="store_true", help="do not mail the summary")


def _age(ctx) -> int:
    from nightwarden.lib.blocks import validate_ttl

    args = ctx.args
    if args is not None and getattr(args, "all", False):
        return 0
    if args is not None and getattr(args, "older_than", None):
        return validate_ttl(args.older_than)
    return ctx.config.blocks.purge_age


def _kernel_or_none(ctx):
    """The real kernel's entries, read only (for --dry-run); None when it cannot be read."""
    from nightwarden.lib.errors import NightwardenError
    from nightwarden.lib.firewall import open_backend

    try:
        return open_backend(ctx.config).list()
    except NightwardenError as e:
        ctx.log.info("kernel not inspected: %s", e)
        return None


def summary_lines(result) -> tuple[str, str]:
    by_source = "\n".join(f"  {src:<12} {n}" for src, n in sorted(result.by_source.items())) or "  (none)"
    fixes = [f"  added (was only in state or the lists): {x}" for x in result.reconciled_added]
    fixes += [f"  removed (was only in the kernel): {x}" for x in result.reconciled_removed]
    return by_source, "\n".join(fixes) or "  kernel and state agreed"


def run(ctx) -> Result:
    from nightwarden.lib import lifecycle

    age = _age(ctx)
    scope = "all" if age == 0 else f"older than {age} s"
    mgr = ctx.blocks
    if ctx.dry_run:
        result = lifecycle.plan_purge(mgr, age, _kernel_or_none(ctx))
        verb = "would remove"
    else:
        result = lifecycle.purge(mgr, age)
        verb = "removed"
    by_source, reconciled = summary_lines(result)
    kept = (
        f"{result.kept_permanent} permanent blocks, {result.kept_temporary} newer dynamic blocks, "
        f"{len(mgr.lists.deny.entries)} deny list and {len(mgr.lists.allow.entries)} allow list entries"
    )
    ctx.say(f"purge ({scope}): {verb} {len(result.removed)} dynamic block(s); kept {kept}")
    ctx.say(f"by source:\n{by_source}\nreconciled:\n{reconciled}")
    if not (ctx.args is not None and getattr(ctx.args, "no_mail", False)):
        ctx.mailer.alert(
            "purge",
            {
                "removed": len(result.removed),
                "scope": scope,
                "kept": kept,
                "backend": ctx.firewall.describe(),
                "by_source": by_source,
                "reconciled": reconciled,
            },
        )
    fixes = len(result.reconciled_added) + len(result.reconciled_removed)
    return Result(
        0,
        f"{verb} {len(result.removed)} dynamic blocks ({scope}); "
        f"{fixes} kernel/state differences {'to fix' if ctx.dry_run else 'fixed'}",
    )
