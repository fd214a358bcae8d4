/**
 * OpenTelemetry spans from simple-ipc's tracing channels, without touching the application's
 * code: {@link instrument} subscribes to `simple-ipc:server:request` and
 * `simple-ipc:client:request` (docs/observability.md) and makes a SERVER span per accepted
 * connection and a CLIENT span per request. The server span is the active context inside the
 * handler (its store is bound to the channel's `start`), so the handler's own spans are its
 * children; a client span is the child of whatever span was active where the request was made.
 *
 * Run it to see the spans of a few requests, as JSON lines:
 *
 *   node dist/examples/opentelemetry.js
 *
 * `@opentelemetry/api` and `@opentelemetry/sdk-trace-base` are development dependencies of
 * simple-ipc, for this example only; simple-ipc itself depends on nothing. A real program would
 * use `@opentelemetry/context-async-hooks` as its context manager and an exporter of its
 * choice; the context manager here is the few lines it takes over AsyncLocalStorage.
 */

import { AsyncLocalStorage } from 'node:async_hooks';
import diagnosticsChannel from 'node:diagnostics_channel';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  type Context,
  type ContextManager,
  context,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
} from '@opentelemetry/api';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
// In your own project: from 'simple-ipc'.
import {
  type ClientRequestContext,
  DiagnosticsChannel,
  sendCommand,
  type ServerRequestContext,
  startServer,
} from '../src/index.js';

/** An OpenTelemetry context manager over one AsyncLocalStorage. */
export class StorageContextManager implements ContextManager {
  readonly storage = new AsyncLocalStorage<Context>();

  active(): Context {
    return this.storage.getStore() ?? ROOT_CONTEXT;
  }

  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.storage.run(ctx, () => fn.apply(thisArg, args));
  }

  bind<T>(ctx: Context, target: T): T {
    if (typeof target !== 'function') return target;
    const fn = target as unknown as (...args: unknown[]) => unknown;
    return ((...args: unknown[]) => this.with(ctx, fn, undefined, ...args)) as T;
  }

  enable(): this {
    return this;
  }

  disable(): this {
    this.storage.disable();
    return this;
  }
}

/**
 * Makes spans of simple-ipc's requests with `tracer`; `manager` must be the global context
 * manager. Returns what undoes it.
 */
export function instrument(tracer: Tracer, manager: StorageContextManager): () => void {
  const spans = new WeakMap<object, Span>();
  const server = diagnosticsChannel.tracingChannel(DiagnosticsChannel.SERVER_REQUEST);
  const client = diagnosticsChannel.tracingChannel(DiagnosticsChannel.CLIENT_REQUEST);

  // Starting the span where the store is bound makes it the active context of what the
  // request runs: the handler on the server, the socket's events on the client.
  const begin =
    (name: string, kind: SpanKind) =>
    (message: unknown): Context => {
      const request = message as { path: string };
      const parent = manager.active();
      const span = tracer.startSpan(
        name,
        { kind, attributes: { 'simple-ipc.path': request.path } },
        parent,
      );
      spans.set(request, span);
      return trace.setSpan(parent, span);
    };
  server.start.bindStore(manager.storage, begin('simple-ipc server request', SpanKind.SERVER));
  client.start.bindStore(manager.storage, begin('simple-ipc client request', SpanKind.CLIENT));

  const end = (message: unknown): void => {
    const request = message as (ServerRequestContext | ClientRequestContext) & object;
    const span = spans.get(request);
    if (span === undefined) return;
    span.setAttributes({
      'simple-ipc.outcome': String(request.outcome),
      'simple-ipc.request.bytes': request.requestBytes,
      'simple-ipc.response.bytes': request.responseBytes,
    });
    if ('queueWait' in request && request.queueWait !== undefined) {
      span.setAttribute('simple-ipc.queue_wait_ms', request.queueWait);
    }
    if ('retries' in request) span.setAttribute('simple-ipc.retries', request.retries);
    if (request.error !== undefined) {
      const error = request.error as Error & { code?: string };
      span.recordException(error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: error.code ?? error.message });
    }
    span.end();
  };
  const handlers = {
    start: () => {},
    end: () => {},
    asyncStart: () => {},
    asyncEnd: end,
    error: () => {},
  };
  server.subscribe(handlers);
  client.subscribe(handlers);
  return () => {
    server.unsubscribe(handlers);
    client.unsubscribe(handlers);
    server.start.unbindStore(manager.storage);
    client.start.unbindStore(manager.storage);
  };
}

/** Runs a server and a few requests, and prints their spans as JSON lines. */
async function main(): Promise<void> {
  const manager = new StorageContextManager();
  context.setGlobalContextManager(manager);
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  trace.setGlobalTracerProvider(provider);
  const tracer = trace.getTracer('simple-ipc-example');
  const uninstrument = instrument(tracer, manager);

  const dir = mkdtempSync(join(tmpdir(), 'sipc-otel-'));
  try {
    const path = join(dir, 's');
    const server = await startServer(
      path,
      async (request, reply) => {
        // The handler's own span: a child of the server request's span.
        await tracer.startActiveSpan('handle', async (span) => {
          if (request.toString() === 'fail') {
            span.end();
            throw new Error('cannot do that');
          }
          await reply(`done: ${request.toString()}`);
          span.end();
        });
      },
      { onHandlerError: () => {} },
    );
    await tracer.startActiveSpan('app', async (app) => {
      await sendCommand(path, 'work');
      await sendCommand(path, 'fail').catch(() => {});
      app.end();
    });
    await server.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
    uninstrument();
  }
  await provider.forceFlush();
  for (const span of exporter.getFinishedSpans()) {
    process.stdout.write(
      `${JSON.stringify({
        name: span.name,
        kind: SpanKind[span.kind],
        id: span.spanContext().spanId,
        parent: span.parentSpanContext?.spanId,
        status: SpanStatusCode[span.status.code],
        attributes: span.attributes,
      })}\n`,
    );
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
