#!/usr/bin/env -S node --max-semi-space-size=4 --initial-old-space-size=32 --heap-growing-percent=30 --v8-pool-size=1
import { Command, CommanderError, Option } from 'commander';
import { ConfigError, loadConfig, type FlagValues } from '../config.js';
import type { SimulateFlags } from './simulate.js';
import { missingServeFlags } from './node-flags.js';
import { registerStoreCommands } from './store.js';

const program = new Command();
program.name('orchard').description('GitOps controller and MDM server for Apple devices');
// Usage errors exit 2 (commander's default is 1, which `validate` and `plan` use for findings).
program.exitOverride();

const collect = (value: string, prev: string[] = []) => [...prev, value];

/** Print a command's result and set the exit code (commands return instead of exiting, for tests). */
function emit(out: { stdout: string; stderr?: string; exitCode: number }): void {
  process.stdout.write(out.stdout);
  if (out.stderr) process.stderr.write(out.stderr);
  process.exitCode = out.exitCode;
}

program
  .command('serve')
  .description('run the MDM server (device endpoints, admin API)')
  .option('--config <file>', 'YAML config file (flags override it)')
  .option('--listen <host:port>', 'address to listen on (default 127.0.0.1:8080)')
  .option('--data-dir <dir>', 'embedded store directory (default ./data)')
  .option('--store <url>', 'run on PostgreSQL (postgres://...) instead of LevelDB in --data-dir')
  .option('--repo <path|url>', 'fleet repository')
  .option('--branch <name>', 'branch to follow (default main)')
  .option('--public-url <url>', 'URL devices reach this server at')
  .option('--trust-ca <file>', 'PEM CA whose identity certificates may enroll (repeatable)', collect)
  .option('--cert-header <name>', 'take the client certificate from this proxy header instead of Mdm-Signature')
  .option('--tls-cert <file>', 'serve HTTPS with this certificate')
  .option('--tls-key <file>', 'private key for --tls-cert')
  .option('--max-body-bytes <n>', 'largest request body accepted (default 8 MiB)')
  .option('--headers-timeout <duration>', 'request headers must arrive within this of the first byte, else 408 (default 10s)')
  .option('--request-timeout <duration>', 'the body must arrive within this after the headers, else 408 (default 30s)')
  .option('--keep-alive-timeout <duration>', 'close a connection idle between requests after this (default 65s)')
  .option('--max-connections <n>', 'close connections beyond this many as they arrive (default 10000)')
  .option('--replay-window <duration>', 'answer an exact repeat of a state-changing check-in within this 200 without applying it (default 24h; 0: off)')
  .option('--replay-cache-size <n>', 'check-in messages the replay window remembers at most (default 100000)')
  .option('--retention <duration>', 'keep finished commands this long (default 7d)')
  .option('--poll-interval <duration>', 'fetch the fleet repository this often (default 60s; 0: webhook only)')
  .option('--drift-interval <duration>', 'ask every device for its profiles this often (default 4h; 0: never)')
  .option('--abm-sync-interval <duration>', 'sync the devices of each imported ABM token this often (default 15m; 0: never)')
  .option('--leader-lease <duration>', 'how long a dead leader keeps the other replicas waiting (default 15s)')
  .option('--abm-url <url>', "Apple's device enrollment service (default https://mdmenrollment.apple.com)")
  .option('--validation-memory <mb>', 'heap of the process validating each fleet revision, MB (default 512)')
  .option('--validation-timeout <duration>', 'time limit of validating a fleet revision (default 2m)')
  .option('--manifests <dir>', 'check custom preference domains against the ProfileManifests-format manifests in this folder')
  .option('--apns-url <url>', 'APNs endpoint (default Apple production; for tests or a relay)')
  .addOption(new Option('--apns-env <env>', 'Apple APNs environment').choices(['production', 'sandbox']))
  .option('--event-webhook <url>', 'send signed JSON events to this URL (repeatable; secret ORCHARD_EVENT_SECRET)', collect)
  .option('--commit-status <github:OWNER/REPO|gitlab:PROJECT>', "post each applied revision's rollout state to this repository's commits")
  .option('--commit-status-url <url>', 'API base URL of the git host (default https://api.github.com, https://gitlab.com/api/v4)')
  .option('--commit-status-token-file <file>', 'file holding the git host token (else ORCHARD_COMMIT_STATUS_TOKEN)')
  .option(
    '--material-key-file <file>',
    'the key that seals the CA and push certificate keys in the store (else env ORCHARD_MATERIAL_KEY, else DATA_DIR/material.key)',
  )
  .option('--secrets-dir <dir>', 'values of ${secret:NAME} (file NAME; default DATA_DIR/secrets), or env ORCHARD_SECRET_<NAME>')
  .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']))
  .addOption(
    new Option('--reenroll <policy>', 'when another certificate may take over an enrolled device (default same-serial-challenge)').choices([
      'allow',
      'same-serial-challenge',
      'after-checkout',
    ]),
  )
  .addHelpText(
    'after',
    '\nEnvironment: ORCHARD_API_TOKEN (admin API token), ORCHARD_READ_TOKEN (read-only token),\nORCHARD_WEBHOOK_SECRET (HMAC secret of POST /api/v1/hooks/git), ORCHARD_SCEP_CHALLENGE (static SCEP\nchallenge; without it enrollment needs one-time links from POST /api/v1/enrollments),\nORCHARD_SECRET_<NAME> (values of ${secret:NAME}), ORCHARD_COMMIT_STATUS_TOKEN (git host token for --commit-status),\nORCHARD_MATERIAL_KEY (seals the CA and push keys in the store; every replica needs the same).',
  )
  .action(async (flags: FlagValues) => {
    const cfg = loadConfig(flags);
    // Loaded on demand: every other command (and --help) starts without the server's modules.
    const { enrollmentOptions } = await import('./enroll.js');
    const { startServer } = await import('../server.js');
    const missing = missingServeFlags(process.execArgv, process.env.NODE_OPTIONS);
    const server = await startServer(cfg, {
      startupWarnings: missing.length
        ? [
            {
              fields: { missing },
              msg: `started without the V8 flags that keep the server's memory small: run the orchard executable, or node ${missing.join(' ')} ...`,
            },
          ]
        : [],
      adminToken: process.env.ORCHARD_API_TOKEN || undefined,
      readToken: process.env.ORCHARD_READ_TOKEN || undefined,
      webhookSecret: process.env.ORCHARD_WEBHOOK_SECRET || undefined,
      eventSecret: process.env.ORCHARD_EVENT_SECRET || undefined,
      commitStatusToken: process.env.ORCHARD_COMMIT_STATUS_TOKEN || undefined,
      materialKey: process.env.ORCHARD_MATERIAL_KEY || undefined,
      // The topic is the imported push certificate's, read when a profile is built.
      enrollment: enrollmentOptions(),
    });
    const stop = async (signal: string) => {
      server.log.info({ signal }, 'shutting down');
      await server.close();
      process.exit(0);
    };
    process.once('SIGINT', () => void stop('SIGINT'));
    process.once('SIGTERM', () => void stop('SIGTERM'));
  });

program
  .command('simulate')
  .description('enroll simulated devices (signed requests, real identities) and answer commands')
  .requiredOption('--server <url>', 'Orchard server URL, e.g. http://127.0.0.1:8080')
  .option('--state-dir <dir>', 'simulator CA and device state (created if missing; start the server with --trust-ca DIR/ca.pem)', './data/simulator')
  .option('--count <n>', 'number of devices', '1')
  .option('--interval <seconds>', 'seconds between check-ins', '10')
  .option('--prefix <text>', 'serial number prefix', 'SIM')
  .option('--once', 'check in once and exit')
  .option('--enroll-url <url>', "enroll new devices from the server's enrollment profile through SCEP (e.g. URL/mdm/enroll?c=<one-time challenge>)")
  .option('--reenroll', 'authenticate the saved devices again (the server lost them, e.g. a new data directory)')
  .option(
    '--abm <url>',
    "enroll new devices as ABM devices from Setup Assistant: ask this activation service (the ABM stand-in's URL) for each serial's enrollment profile and POST the device information to its URL",
  )
  .action(async (flags: SimulateFlags) => {
    // Loaded on demand: the simulator's CA code (the certificate builder) has no place in a server's memory.
    const { simulate, SimulateError } = await import('./simulate.js');
    try {
      await simulate(flags);
    } catch (err) {
      if (!(err instanceof SimulateError) && !(err instanceof Error && 'code' in err && err.code === 'ECONNREFUSED')) throw err;
      process.stderr.write(`orchard simulate: ${err.message}\n`);
      process.exitCode = 1;
    }
  });

program
  .command('init')
  .description('create a CA, a server config and a fleet repository (never overwrites)')
  .argument('[dir]', 'where', '.')
  .option('--public-url <url>', 'URL devices reach the server at')
  .action(async (dir: string, flags: { publicUrl?: string }) => {
    const { runInit } = await import('./enroll.js');
    const out = await runInit(dir, flags);
    emit(out);
  });

program
  .command('enroll-profile')
  .description('write the signed enrollment profile (.mobileconfig) to stdout')
  .option('--config <file>', 'server config file')
  .option('--data-dir <dir>', 'data directory of the server (its embedded store)')
  .option('--store <url>', 'the store of the server: a postgres:// URL (default: LevelDB in the data directory)')
  .option('--material-key-file <file>', 'the material key of the server (else env ORCHARD_MATERIAL_KEY, else DATA_DIR/material.key)')
  .option('--public-url <url>', 'URL devices reach the server at')
  .option('--push-cert <file>', 'read the APNs topic from this push certificate')
  .option('--topic <topic>', 'APNs topic (com.apple.mgmt.External.<uuid>)')
  .option('--one-time', 'embed a one-time challenge even if ORCHARD_SCEP_CHALLENGE is set')
  .option('--ttl <duration>', 'lifetime of a one-time challenge (default 1h)')
  .option('--serial <serial>', 'a one-time challenge for this serial number only (the certificate proves it)')
  .option('--udid <udid>', 'a one-time challenge for this UDID only')
  .action(async (flags: import('./enroll.js').EnrollProfileFlags) => {
    const { runEnrollProfile } = await import('./enroll.js');
    const r = await runEnrollProfile(flags, process.env);
    for (const n of r.notes) process.stderr.write(`${n}\n`);
    process.stdout.write(r.profile);
  });

const pushCert = program.command('push-cert').description('the APNs push certificate');
for (const [name, desc] of [
  ['import', 'import (or renew) the push certificate: PEM or PKCS#12 (password from ORCHARD_PUSH_CERT_PASSWORD)'],
  ['show', 'show the topic and expiry of a push certificate (default: the imported one)'],
] as const) {
  const cmd = pushCert.command(name).description(desc);
  if (name === 'import')
    cmd
      .argument('<cert>', 'certificate (PEM, DER or PKCS#12)')
      .argument('[key]', 'private key (PEM), unless in the PKCS#12 (default: DATA_DIR/push/request/push.key)');
  else cmd.argument('[cert]', 'certificate file');
  cmd.option('--config <file>', 'server config file').option('--data-dir <dir>', 'data directory');
  if (name === 'import') cmd.option('--force', 'accept a changed topic or an expired certificate (a changed topic loses every enrolled device)');
  cmd.action(async (...args: unknown[]) => {
    const { pushCertImport, pushCertShow } = await import('./push-cert.js');
    const password = process.env.ORCHARD_PUSH_CERT_PASSWORD || undefined;
    const out =
      name === 'import'
        ? await pushCertImport(args[0] as string, args[1] as string | undefined, {
            dataDir: loadConfig(args[2] as FlagValues).dataDir,
            force: (args[2] as { force?: boolean }).force,
            password,
          })
        : await pushCertShow(args[0] as string | undefined, { dataDir: loadConfig(args[1] as FlagValues).dataDir, password });
    emit(out);
  });
}

pushCert
  .command('vendor-csr')
  .description('key and CSR for Apple\'s MDM vendor certificate (upload as "MDM CSR" at developer.apple.com)')
  .requiredOption('--cn <name>', 'subject common name (your organization)')
  .requiredOption('--email <address>', "subject email (the Apple developer account's)")
  .option('--country <CC>', 'two-letter country code')
  .option('--dir <dir>', 'output directory (default DATA_DIR/push/vendor)')
  .option('--force', 'replace an existing vendor.key (the vendor certificate issued for it stops working)')
  .option('--config <file>', 'server config file')
  .option('--data-dir <dir>', 'data directory')
  .action(async (flags: { config?: string; dataDir?: string; cn: string; email: string; country?: string; dir?: string; force?: boolean }) => {
    const { pushCertVendorCsr } = await import('./push-cert.js');
    const out = await pushCertVendorCsr({
      dataDir: loadConfig({ config: flags.config, dataDir: flags.dataDir }).dataDir,
      cn: flags.cn,
      email: flags.email,
      country: flags.country,
      dir: flags.dir,
      force: flags.force,
    });
    emit(out);
  });

pushCert
  .command('request')
  .description("push key and the vendor-signed request for Apple's push certificates portal (identity.apple.com)")
  .requiredOption('--vendor-cert <file>', "vendor certificate (PEM, followed by Apple's intermediate and root; or DER)")
  .option('--vendor-key <file>', 'vendor private key (default DATA_DIR/push/vendor/vendor.key)')
  .option('--dir <dir>', 'output directory (default DATA_DIR/push/request)')
  .option('--config <file>', 'server config file')
  .option('--data-dir <dir>', 'data directory')
  .action(async (flags: { config?: string; dataDir?: string; vendorCert: string; vendorKey?: string; dir?: string }) => {
    const { pushCertRequest } = await import('./push-cert.js');
    const out = await pushCertRequest({
      dataDir: loadConfig({ config: flags.config, dataDir: flags.dataDir }).dataDir,
      vendorCert: flags.vendorCert,
      vendorKey: flags.vendorKey,
      dir: flags.dir,
    });
    emit(out);
  });

program
  .command('status')
  .description('fleet status from a server: in sync with which revision, and why not')
  .option('--server <url>', 'Orchard server URL', 'http://127.0.0.1:8080')
  .option('--device <id>', 'one device (UDID or serial) in detail')
  .addOption(new Option('--format <format>', 'output format').choices(['table', 'json', 'markdown']).default('table'))
  .addHelpText(
    'after',
    '\nToken from ORCHARD_READ_TOKEN. Exit codes: 0 all well, 1 something needs attention (failed or drifted\ndevices, a rejected revision, an expired push certificate), 2 the server could not be asked.',
  )
  .action(async (f: { server: string; device?: string; format: 'table' | 'json' | 'markdown' }) => {
    const { runStatus } = await import('./status.js');
    const r = await runStatus({
      server: f.server,
      token: process.env.ORCHARD_READ_TOKEN || process.env.ORCHARD_API_TOKEN || undefined,
      device: f.device,
      format: f.format,
    });
    emit(r);
  });

const abm = program
  .command('abm')
  .description('Apple Business Manager: the key pair to upload, and the server tokens it returns')
  .addHelpText(
    'after',
    "\nWithout --store they work on DATA_DIR/abm (a server adopts those files into its store); with --store postgres://... on the\nstore's material itself, sealed with the servers' material key (ORCHARD_MATERIAL_KEY, --material-key-file, or DATA_DIR/material.key),\nso a replica with only the database can run them.",
  );
interface AbmFlags {
  config?: string;
  dataDir?: string;
  store?: string;
  materialKeyFile?: string;
}
/** The options every `orchard abm` command takes: where the files, or the store, are. */
function abmWhere(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'server config file')
    .option('--data-dir <dir>', 'data directory')
    .option('--store <url>', "work on this store's ABM material (postgres://...) instead of DATA_DIR/abm")
    .option('--material-key-file <file>', 'with --store: the material key the servers use (else env ORCHARD_MATERIAL_KEY, else DATA_DIR/material.key)');
}
function abmTarget(flags: AbmFlags) {
  const cfg = loadConfig({ config: flags.config, dataDir: flags.dataDir, store: flags.store, materialKeyFile: flags.materialKeyFile });
  // The store only when asked for here: a config file's store is the server's, and without --store these commands keep to the files.
  return {
    dataDir: cfg.dataDir,
    store: flags.store ? cfg.store : undefined,
    materialKeyFile: cfg.materialKeyFile,
    materialKey: process.env.ORCHARD_MATERIAL_KEY || undefined,
  };
}
abmWhere(
  abm
    .command('keypair')
    .description('make (or show) the key pair whose certificate is uploaded to ABM (with --store: the certificate on stdout)')
    .option('--force', 'make a new key pair (tokens made for the old certificate stop working)'),
).action(async (flags: AbmFlags & { force?: boolean }) => {
  const { abmKeypair } = await import('./abm.js');
  emit(await abmKeypair({ ...abmTarget(flags), force: flags.force }));
});
const abmToken = abm.command('token').description('ABM server tokens');
abmWhere(
  abmToken
    .command('import')
    .description('decrypt and store a server token downloaded from ABM (.p7m); shows its organisation, server name and expiry')
    .argument('<file>', 'the .p7m file')
    .option('--name <name>', 'name of this token (several may coexist)', 'default')
    .option('--replace', 'replace a token of that name made for another ABM server')
    .option('--dep-url <url>', "Apple's device enrollment service (a stand-in in tests)")
    .option('--offline', 'do not ask ABM for the organisation and server name'),
).action(async (file: string, flags: AbmFlags & { name: string; replace?: boolean; depUrl?: string; offline?: boolean }) => {
  const { abmTokenImport } = await import('./abm.js');
  emit(await abmTokenImport(file, { ...abmTarget(flags), name: flags.name, replace: flags.replace, depUrl: flags.depUrl, offline: flags.offline }));
});
abmWhere(abmToken.command('list').description('the imported tokens and their expiry (warned 30 days ahead)')).action(async (flags: AbmFlags) => {
  const { abmTokenList } = await import('./abm.js');
  emit(await abmTokenList(abmTarget(flags)));
});

const rollout = program.command('rollout').description('staged rollouts on a server: where they stand, going on past a halted gate');
rollout
  .command('list')
  .description('every staged rollout: step, counts, and why it halted')
  .option('--server <url>', 'Orchard server URL', 'http://127.0.0.1:8080')
  .addHelpText('after', '\nToken from ORCHARD_READ_TOKEN (or ORCHARD_API_TOKEN).')
  .action(async (f: { server: string }) => {
    const { runRollout } = await import('./rollout.js');
    emit(await runRollout({ server: f.server, token: process.env.ORCHARD_READ_TOKEN || process.env.ORCHARD_API_TOKEN || undefined, action: 'list' }));
  });
rollout
  .command('resume')
  .description('resume a halted rollout: its failures so far are accepted, the gate counts new ones')
  .argument('<blueprint>', 'blueprint name')
  .option('--server <url>', 'Orchard server URL', 'http://127.0.0.1:8080')
  .addHelpText('after', '\nAdmin token from ORCHARD_API_TOKEN.')
  .action(async (blueprint: string, f: { server: string }) => {
    const { runRollout } = await import('./rollout.js');
    emit(await runRollout({ server: f.server, token: process.env.ORCHARD_API_TOKEN || undefined, action: 'resume', blueprint }));
  });

program
  .command('validate')
  .description('validate a fleet repository (schema, Apple payload keys, references) as the server would')
  .argument('[path]', 'repository root', '.')
  .addOption(new Option('--format <format>', 'output format').choices(['text', 'json', 'github']).default('text'))
  .option('--strict', 'warnings are errors too (exit 1)')
  .option('--manifests <dir>', 'check custom preference domains against the ProfileManifests-format manifests in this folder')
  .addHelpText('after', '\nExit codes: 0 valid (warnings allowed unless --strict), 1 invalid, 2 usage error.')
  .action(async (path: string, opts: { format: 'text' | 'json' | 'github'; strict?: boolean; manifests?: string }) => {
    const { runValidate } = await import('./validate.js');
    const out = await runValidate(path, opts.format, { strict: opts.strict === true, manifests: opts.manifests });
    emit(out);
  });

program
  .command('plan')
  .description('show what applying the repository at PATH would do to the fleet')
  .argument('[path]', 'repository root (or a folder inside it)', '.')
  .option('--inventory <file>', 'devices as JSON (the output of GET /api/v1/devices)')
  .option('--server <url>', 'read the inventory from a server (token from ORCHARD_READ_TOKEN)')
  .option('--base <rev>', 'only what changes relative to this git revision (e.g. origin/main)')
  .addOption(new Option('--format <format>', 'output format').choices(['text', 'markdown', 'json']).default('text'))
  .addHelpText(
    'after',
    '\nExit codes: 0 no changes, 2 changes, 1 errors (invalid repository, unreadable inventory,\na profile that cannot be rendered for a device).',
  )
  .action(async (path: string, opts: { inventory?: string; server?: string; base?: string; format: 'text' | 'markdown' | 'json' }) => {
    const { runPlan } = await import('./plan.js');
    const out = await runPlan({ path, ...opts, token: process.env.ORCHARD_READ_TOKEN || process.env.ORCHARD_API_TOKEN || undefined });
    emit(out);
  });

program
  .command('import')
  .description('turn existing .mobileconfig files (files or folders) into a fleet repository')
  .argument('<paths...>', '.mobileconfig files, or folders searched for them')
  .requiredOption('--out <dir>', 'the new repository (a new or empty folder)')
  .option('--to-yaml', 'write payloads as YAML where that says the same (signed profiles always stay files)', false)
  .addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text'))
  .addHelpText('after', '\nExit codes: 0 all imported and valid, 1 a file skipped or validation errors, 2 usage error.')
  .action(async (paths: string[], opts: { out: string; toYaml: boolean; format: 'text' | 'json' }) => {
    const { runImport } = await import('./import.js');
    emit(await runImport({ paths, ...opts }));
  });

registerStoreCommands(program);

program.parseAsync().catch((err: unknown) => {
  if (err instanceof CommanderError) {
    // commander has already printed the message (or the help).
    process.exit(err.code === 'commander.helpDisplayed' || err.code === 'commander.help' || err.code === 'commander.version' ? 0 : 2);
  }
  if (err instanceof ConfigError) {
    process.stderr.write(`orchard: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`orchard: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
