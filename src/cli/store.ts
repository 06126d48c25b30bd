/**
 * `orchard migrate`: bring a PostgreSQL store's schema up to this version (the server also does
 * it at start). `orchard store copy`: move an install from one store to another (src/store/copy.ts).
 * Registered from main.ts; the store code loads only when a command runs.
 */
import type { Command } from 'commander';
import type { FlagValues } from '../config.js';

export function registerStoreCommands(program: Command): void {
  program
    .command('migrate')
    .description("apply the PostgreSQL store's schema migrations (forward only; a newer schema is refused)")
    .option('--config <file>', 'server config file (its store key)')
    .option('--store <url>', 'postgres:// URL of the store')
    .action(async (flags: { config?: string; store?: string }) => {
      const { loadConfig, ConfigError } = await import('../config.js');
      const cfg = loadConfig({ config: flags.config, store: flags.store } satisfies FlagValues);
      if (!cfg.store) throw new ConfigError('migrate: no PostgreSQL store given (--store postgres://... or the config key store); LevelDB needs no migrations');
      const { createPool, migrate } = await import('../store/postgres.js');
      const { describeStore } = await import('../store/open.js');
      const pool = createPool(cfg.store, 1);
      try {
        const { from, to } = await migrate(pool);
        process.stdout.write(
          from === to
            ? `${describeStore(cfg.store)}: schema at version ${to}, nothing to do\n`
            : `${describeStore(cfg.store)}: schema migrated from version ${from} to ${to}\n`,
        );
      } finally {
        await pool.end();
      }
    });

  program
    .command('store')
    .description('the store itself')
    .command('copy')
    .description(
      'copy every role of one store into another (devices, queue, results, reconcile state, status, material, DDM, rollouts, ABM), a LevelDB data directory into PostgreSQL or back; stop the server on the source first',
    )
    .requiredOption('--from <location>', 'the source: a LevelDB data directory or a postgres:// URL')
    .requiredOption('--to <location>', 'the target: a postgres:// URL (its schema is migrated first) or a LevelDB data directory (created when missing)')
    .option('--force', 'copy into a target that is not empty (devices it has already are skipped)')
    .action(async (flags: { from: string; to: string; force?: boolean }) => {
      const { ConfigError } = await import('../config.js');
      const { closeStores, describeStore, isPostgresUrl, openBackends } = await import('../store/open.js');
      const { copyStores } = await import('../store/copy.js');
      const { OrchardError } = await import('../errors.js');
      if (!isPostgresUrl(flags.from)) {
        const { existsSync } = await import('node:fs');
        if (!existsSync(flags.from)) throw new ConfigError(`store copy: --from ${flags.from}: no such data directory`);
      }
      if (!isPostgresUrl(flags.from) && !isPostgresUrl(flags.to)) {
        throw new ConfigError(
          'store copy: --from and --to are both data directories; one of them must be a postgres:// URL (copy a data directory with the server stopped instead)',
        );
      }
      const from = await openBackends(flags.from, flags.from);
      try {
        const to = await openBackends(flags.to, flags.to);
        try {
          const n = await copyStores(from, to, { force: flags.force }).catch((err: unknown) => {
            // A refusal (a target that is not empty, a backend a copy cannot write) is the operator's to fix, not a crash.
            throw err instanceof OrchardError ? new ConfigError(`store copy: ${err.message}`) : err;
          });
          process.stdout.write(
            `copied ${describeStore(flags.from)} -> ${describeStore(flags.to)}: ${n.devices} devices (${n.enrollments} enrollments, ${n.commands} commands)` +
              `${n.skippedDevices ? `, ${n.skippedDevices} devices already there skipped` : ''}, ${n.material} material items, ` +
              `DDM state of ${n.ddmEnrollments} enrollments, ${n.rollouts} rollouts, ${n.abmDevices} ABM devices, ${n.abmProfiles} ABM enrollment profiles\n`,
          );
        } finally {
          await closeStores(to);
        }
      } finally {
        await closeStores(from);
      }
    });
}
