/**
 * `orchard migrate`: bring a PostgreSQL store's schema up to this version (the server also does
 * it at start). Registered from main.ts; the store code loads only when the command runs.
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
}
