/**
 * runtime/openapi.ts: the OpenAPI 3.1 document cannot drift from the gateway's route table; every
 * alias of every route is described with its method, and the document has the basic OpenAPI shape.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createGatewayService } from '../../actors/gateway.service.ts';
import { openApiDocument } from '../../runtime/openapi.ts';
import { testConfig } from '../support/config.ts';

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

/** Every alias of the gateway as [method, OpenAPI path], e.g. ['post', '/api/events/{eventId}/end']. */
function gatewayAliases(): Array<[string, string]> {
  const schema = createGatewayService(testConfig());
  const routes = (schema.settings as { routes: Array<{ path: string; aliases: Record<string, unknown> }> }).routes;
  const out: Array<[string, string]> = [];
  for (const route of routes) {
    for (const alias of Object.keys(route.aliases ?? {})) {
      const m = /^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)\s+(\S+)$/i.exec(alias);
      assert.ok(m, `alias '${alias}' names a method and a path (REST shorthands and bare paths are not described)`);
      const full = (route.path.replace(/\/$/, '') + '/' + m[2]!.replace(/^\//, '')).replace(/:([A-Za-z_]\w*)/g, '{$1}');
      out.push([m[1]!.toLowerCase(), full]);
    }
  }
  return out;
}

describe('runtime/openapi', () => {
  const doc = JSON.parse(JSON.stringify(openApiDocument('https://jitcast.example:8443'))) as any;

  it('openApiDocument() survives a JSON round trip unchanged (plain JSON, nothing lost)', () => {
    assert.deepEqual(doc, openApiDocument('https://jitcast.example:8443'));
  });

  it('openApiDocument() has the OpenAPI 3.1 shape: openapi, info.title/version, servers, paths, components', () => {
    assert.equal(doc.openapi, '3.1.0');
    assert.equal(typeof doc.info.title, 'string');
    assert.equal(typeof doc.info.version, 'string');
    assert.deepEqual(doc.servers, [{ url: 'https://jitcast.example:8443' }]);
    assert.ok(Object.keys(doc.paths).length > 10);
    assert.equal(doc.components.securitySchemes.apiKey.scheme, 'bearer');
  });

  it('every operation has an operationId (unique), tags and at least one response', () => {
    const ids = new Set<string>();
    for (const [path, item] of Object.entries<any>(doc.paths)) {
      assert.match(path, /^\//, `${path} starts with /`);
      for (const [method, op] of Object.entries<any>(item)) {
        assert.ok(METHODS.includes(method), `${path}: '${method}' is an HTTP method`);
        assert.ok(op.operationId && !ids.has(op.operationId), `${method} ${path} has a unique operationId`);
        ids.add(op.operationId);
        assert.ok(Array.isArray(op.tags) && op.tags.length > 0, `${method} ${path} has tags`);
        assert.ok(Object.keys(op.responses ?? {}).length > 0, `${method} ${path} has responses`);
      }
    }
  });

  it('every path parameter {x} is declared as a parameter of each of its operations', () => {
    for (const [path, item] of Object.entries<any>(doc.paths)) {
      const names = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
      for (const [method, op] of Object.entries<any>(item)) {
        const declared = (op.parameters ?? []).map((p: any) => (p.$ref ? doc.components.parameters[p.$ref.split('/').pop()] : p)).filter((p: any) => p?.in === 'path').map((p: any) => p.name);
        assert.deepEqual(declared.sort(), [...names].sort(), `${method} ${path}`);
      }
    }
  });

  it('every $ref points at something the document defines', () => {
    const refs = JSON.stringify(doc).match(/"\$ref":"[^"]+"/g) ?? [];
    for (const r of refs) {
      const target = r.slice(8, -1).replace(/^#\//, '').split('/');
      let node: any = doc;
      for (const part of target) node = node?.[part];
      assert.ok(node, `${r} resolves`);
    }
  });

  it('/api operations need the API key except GET /api/openapi.json; pages and links need none', () => {
    assert.deepEqual(doc.security, [{ apiKey: [] }]);
    assert.deepEqual(doc.paths['/api/openapi.json'].get.security, []);
    assert.equal(doc.paths['/api/events'].post.security, undefined);
    assert.deepEqual(doc.paths['/e/{token}/end'].post.security, []);
  });

  it('REST operations take and answer both application/json and application/xml', () => {
    const reserve = doc.paths['/api/events'].post;
    assert.deepEqual(Object.keys(reserve.requestBody.content).sort(), ['application/json', 'application/xml']);
    assert.deepEqual(Object.keys(reserve.responses['201'].content).sort(), ['application/json', 'application/xml']);
    assert.equal(reserve.responses['201'].content['application/xml'].schema.xml.name, 'event');
  });

  it("every alias of the gateway's route table is described with its method", () => {
    const aliases = gatewayAliases();
    assert.ok(aliases.length >= 20, `found ${aliases.length} aliases`);
    const missing = aliases.filter(([method, path]) => !doc.paths[path]?.[method]).map(([m, p]) => `${m.toUpperCase()} ${p}`);
    assert.deepEqual(missing, [], `routes missing from runtime/openapi.ts: ${missing.join(', ')}`);
  });

  it('the document describes the issue 5 routes: report, keys, cluster maintenance, archive retry', () => {
    for (const [method, path] of [
      ['get', '/api/events/{eventId}/report'],
      ['post', '/api/keys'],
      ['get', '/api/keys'],
      ['post', '/api/events/{eventId}/archive/retry'],
      ['post', '/api/cluster/voice-servers/{nodeId}/drain'],
      ['post', '/api/cluster/voice-servers/{nodeId}/resume'],
    ]) {
      assert.ok(doc.paths[path!]?.[method!], `${method} ${path}`);
    }
  });
});
