// The real tus 1.0 server the tests run against: @tus/server with @tus/file-store,
// on loopback only.
//
//   node server.mjs --port 0 --dir /tmp/store [--relative] [--expiration-ms N]
//                   [--token-ttl-ms N]
//
// Options may also come from the environment: TUS_PORT, TUS_DIR, TUS_RELATIVE=1,
// TUS_EXPIRATION_MS, TUS_TOKEN_TTL_MS. With a token TTL, every request needs
// `Authorization: Bearer minted-<ms since the epoch>` minted less than N ms ago, and is
// answered 401 otherwise (before the body: `Expect: 100-continue` gets no 100). Port 0 picks a free port. Once listening it prints exactly one
// line `READY <port>` on stdout. Uploads live under the path /files/; the file store
// keeps an upload's bytes in `<dir>/<id>` and its metadata in `<dir>/<id>.json`, where
// <id> is the last path segment of the upload's URL.
//
// It exits on SIGTERM/SIGINT, and when its stdin closes, so a test process that dies
// without cleaning up does not leave it running (the tests give it a piped stdin).

import http from 'node:http';
import process from 'node:process';

import { FileStore } from '@tus/file-store';
import { Server } from '@tus/server';

function parseArgs(argv) {
  const opts = {
    port: process.env.TUS_PORT ?? '0',
    dir: process.env.TUS_DIR,
    relative: process.env.TUS_RELATIVE === '1',
    expirationMs: process.env.TUS_EXPIRATION_MS ?? '0',
    tokenTtlMs: process.env.TUS_TOKEN_TTL_MS ?? '0',
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) {
        fail(`${a} needs a value`);
      }
      return argv[++i];
    };
    switch (a) {
      case '--port':
        opts.port = value();
        break;
      case '--dir':
        opts.dir = value();
        break;
      case '--relative':
        opts.relative = true;
        break;
      case '--expiration-ms':
        opts.expirationMs = value();
        break;
      case '--token-ttl-ms':
        opts.tokenTtlMs = value();
        break;
      default:
        fail(`unknown argument ${a}`);
    }
  }
  const port = Number.parseInt(opts.port, 10);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    fail(`bad port ${opts.port}`);
  }
  if (!opts.dir) {
    fail('no store directory (--dir or TUS_DIR)');
  }
  const expirationMs = Number.parseInt(opts.expirationMs, 10);
  if (!Number.isInteger(expirationMs) || expirationMs < 0) {
    fail(`bad expiration ${opts.expirationMs}`);
  }
  const tokenTtlMs = Number.parseInt(opts.tokenTtlMs, 10);
  if (!Number.isInteger(tokenTtlMs) || tokenTtlMs < 0) {
    fail(`bad token TTL ${opts.tokenTtlMs}`);
  }
  return { port, dir: opts.dir, relative: opts.relative, expirationMs, tokenTtlMs };
}

function fail(message) {
  process.stderr.write(`tus-server: ${message}\n`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));

const tus = new Server({
  path: '/files',
  relativeLocation: opts.relative,
  datastore: new FileStore({
    directory: opts.dir,
    expirationPeriodInMilliseconds: opts.expirationMs,
  }),
});

// One line per request as it arrives and one as it ends, for the tests to check what
// the server saw:
//   REQ <n> <method> <path> <Upload-Offset or -> <Content-Length or ->
//   END <n> <status> <response Upload-Offset or -> <1 if the response was sent, else 0>
let seq = 0;
function say(line) {
  process.stdout.write(`${line}\n`);
}

// Whether the request carries a token minted less than the TTL ago (always, without one).
function authorized(req) {
  if (opts.tokenTtlMs === 0) {
    return true;
  }
  const m = /^Bearer minted-(\d+)$/.exec(req.headers.authorization ?? '');
  return m !== null && Date.now() - Number(m[1]) < opts.tokenTtlMs;
}

function handle(req, res, expectsContinue) {
  const n = ++seq;
  const h = (name) => req.headers[name] ?? '-';
  say(`REQ ${n} ${req.method} ${req.url} ${h('upload-offset')} ${h('content-length')}`);
  let respOffset = '-';
  const writeHead = res.writeHead;
  res.writeHead = function (status, ...rest) {
    const headers = rest.find((x) => x !== null && typeof x === 'object');
    const pairs = Array.isArray(headers)
      ? Array.from({ length: headers.length >> 1 }, (_, i) => [headers[2 * i], headers[2 * i + 1]])
      : Object.entries(headers ?? {});
    for (const [k, v] of pairs) {
      if (String(k).toLowerCase() === 'upload-offset') {
        respOffset = String(v);
      }
    }
    return writeHead.call(this, status, ...rest);
  };
  res.on('close', () => {
    say(`END ${n} ${res.statusCode} ${respOffset} ${res.writableFinished ? 1 : 0}`);
  });
  if (!authorized(req)) {
    // The body (if any) is not wanted: the connection ends with this answer.
    res.writeHead(401, { 'Content-Type': 'text/plain', Connection: 'close' });
    res.end('token expired');
    return;
  }
  if (expectsContinue) {
    res.writeContinue();
  }
  tus.handle(req, res).catch((e) => {
    process.stderr.write(`tus-server: handler failed: ${e?.stack ?? e}\n`);
    if (!res.headersSent) {
      res.statusCode = 500;
    }
    res.end();
  });
}

const server = http.createServer((req, res) => handle(req, res, false));
server.on('checkContinue', (req, res) => handle(req, res, true));
// Tests cut connections on purpose; a reset socket is not worth a crash.
server.on('clientError', (_err, socket) => socket.destroy());

server.listen(opts.port, '127.0.0.1', () => {
  process.stdout.write(`READY ${server.address().port}\n`);
});
server.on('error', (e) => fail(`cannot listen: ${e.message}`));

function stop() {
  // Open connections would keep close() waiting: end them.
  server.closeAllConnections?.();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();
