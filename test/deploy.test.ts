// deploy/ agrees with itself and with the CLI: the Dockerfile's entrypoint and the Kubernetes
// container args are options `wasmforge serve` accepts; probes, ports, labels and the Service /
// Ingress wiring line up; the Ingress hashes the same conversation header as deploy/nginx.conf
// (which test/server-proxy.test.ts runs for real). No container runtime here builds the image.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseArgs } from '../src/cli/args.js';
import { SERVE_ARGS } from '../src/cli/serve.js';

const DEPLOY = join(import.meta.dirname, '../deploy');
const dockerfile = readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8');
const docs = parseAllDocuments(readFileSync(join(DEPLOY, 'kubernetes.yaml'), 'utf8')).map((d) => {
  expect(d.errors).toEqual([]);
  return d.toJS() as any;
});
const kind = (k: string) => docs.find((d) => d.kind === k);

describe('deploy/', () => {
  const entry = JSON.parse(/^ENTRYPOINT (.+)$/m.exec(dockerfile)![1]!) as string[];
  const serveFlags = entry.slice(entry.indexOf('serve') + 1);
  const port = parseArgs(serveFlags, SERVE_ARGS).values.get('port');

  it('the Dockerfile runs `wasmforge serve` with options it has, on the port it exposes and health-checks', () => {
    expect(entry.slice(0, 3)).toEqual(['node', 'bin/wasmforge.js', 'serve']);
    expect(parseArgs(serveFlags, SERVE_ARGS).values.get('host')).toBe('0.0.0.0');
    expect(dockerfile).toMatch(new RegExp(`^EXPOSE ${port}$`, 'm'));
    expect(dockerfile).toContain(`http://127.0.0.1:${port}/health`);
    // What the image copies is what bin/wasmforge.js needs.
    for (const path of ['bin', 'dist', 'models']) expect(dockerfile).toMatch(new RegExp(`COPY --from=build /src/${path} ./${path}`));
    expect(readFileSync(join(import.meta.dirname, '../bin/wasmforge.js'), 'utf8')).toContain('../dist/src/cli/main.js');
    expect(existsSync(join(import.meta.dirname, '../models/stories260K.gguf'))).toBe(true);
  });

  it('the Kubernetes Deployment, Service and Ingress line up with each other and the image', () => {
    const deployment = kind('Deployment'), service = kind('Service'), ingress = kind('Ingress');
    const pod = deployment.spec.template;
    expect(deployment.spec.selector.matchLabels).toEqual(pod.metadata.labels);
    expect(service.spec.selector).toEqual(pod.metadata.labels);
    const container = pod.spec.containers[0];
    // The container args follow the image's entrypoint: together they must parse.
    expect(() => parseArgs([...serveFlags, ...container.args], SERVE_ARGS)).not.toThrow();
    const http = container.ports.find((p: any) => p.name === 'http');
    expect(String(http.containerPort)).toBe(port);
    for (const probe of ['readinessProbe', 'startupProbe']) expect(container[probe].httpGet).toEqual({ path: '/health', port: 'http' });
    expect(container.livenessProbe.tcpSocket.port).toBe('http');
    expect(container.resources.requests.cpu).toBe(container.resources.limits.cpu);
    expect(String(container.resources.limits.cpu)).toBe(parseArgs(container.args, SERVE_ARGS).values.get('threads'));
    expect(service.spec.ports[0].targetPort).toBe('http');
    const backend = ingress.spec.rules[0].http.paths[0].backend.service;
    expect(backend.name).toBe(service.metadata.name);
    expect(backend.port.name).toBe(service.spec.ports[0].name);
    // The same affinity key as deploy/nginx.conf.
    const nginx = readFileSync(join(DEPLOY, 'nginx.conf'), 'utf8');
    const header = /hash (\$http_\w+) consistent;/.exec(nginx)![1];
    expect(ingress.metadata.annotations['nginx.ingress.kubernetes.io/upstream-hash-by']).toBe(header);
  });
});
