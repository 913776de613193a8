// client/js as an npm package: what `npm pack` would publish, its package.json,
// its `exports` (imported by name, as an application would), and its TypeScript
// types checked by tsc --strict against a program that uses the API (types/usage.ts).

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { ROOT } from "./stack.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const PACKAGE_DIR = join(ROOT, "client", "js");
const manifest = JSON.parse(readFileSync(join(PACKAGE_DIR, "package.json"), "utf8"));

// The library's modules, their types, and the documents: nothing else (no tests, no demo).
const SHIPPED = [
  "CHANGELOG.md",
  "README.md",
  "conversation.d.ts",
  "conversation.js",
  "errors.js",
  "package.json",
  "protocol.js",
  "reconnect.js",
  "streamer.d.ts",
  "streamer.js",
  "tracking.js",
];

describe("the npm package", () => {
  it("packs exactly the library, its types and its documents", () => {
    const out = execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: PACKAGE_DIR, encoding: "utf8" });
    const [pack] = JSON.parse(out);
    assert.equal(pack.name, manifest.name);
    assert.equal(pack.version, manifest.version);
    assert.deepEqual(pack.files.map((file) => file.path).sort(), SHIPPED);
  });

  it("is an ES module package with exports, a version and no runtime dependencies", async () => {
    assert.equal(manifest.type, "module");
    assert.match(manifest.version, /^\d+\.\d+\.\d+$/);
    assert.deepEqual(manifest.exports["."], { types: "./streamer.d.ts", default: "./streamer.js" });
    assert.deepEqual(manifest.exports["./conversation"], { types: "./conversation.d.ts", default: "./conversation.js" });
    for (const field of ["dependencies", "peerDependencies", "optionalDependencies", "bundleDependencies"]) {
      assert.equal(manifest[field], undefined, `no ${field}`);
    }
    const { VERSION } = await import("../../client/js/streamer.js");
    assert.equal(VERSION, manifest.version, "streamer.js's VERSION is the package's");
    const changelog = readFileSync(join(PACKAGE_DIR, "CHANGELOG.md"), "utf8");
    assert.match(changelog, new RegExp(`^## ${manifest.version.replaceAll(".", "\\.")} `, "m"), "the changelog has this version");
  });

  it("imports by name through its exports, and its modules import only each other", async () => {
    const byName = await import("@streamer/client");
    const byPath = await import("../../client/js/streamer.js");
    assert.equal(byName.StreamerClient, byPath.StreamerClient);
    const conversation = await import("@streamer/client/conversation");
    assert.equal(conversation.Conversation, byPath.Conversation);
    for (const file of SHIPPED.filter((name) => name.endsWith(".js"))) {
      const source = readFileSync(join(PACKAGE_DIR, file), "utf8");
      const specifiers = [...source.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+"([^"]+)"/gms)].map((match) => match[1]);
      for (const specifier of specifiers) assert.match(specifier, /^\.\/[a-z]+\.js$/, `${file} imports ${specifier}`);
    }
  });

  it("declares a type for every value each module exports, and no value it does not export", async () => {
    for (const [module, types] of [["streamer.js", "streamer.d.ts"], ["conversation.js", "conversation.d.ts"]]) {
      const exported = Object.keys(await import(`../../client/js/${module}`)).sort();
      const declarations = readFileSync(join(PACKAGE_DIR, types), "utf8");
      const declared = new Set([...declarations.matchAll(/^export declare (?:const|class|function) (\w+)/gm)].map((match) => match[1]));
      for (const match of declarations.matchAll(/^export \{([^}]+)\} from/gm)) {
        for (const name of match[1].split(",")) declared.add(name.trim());
      }
      assert.deepEqual([...declared].sort(), exported, types);
    }
  });

  it("has types that tsc --strict accepts for a program using the API, and that refuse misuse", () => {
    const tsc = join(HERE, "node_modules", "typescript", "bin", "tsc");
    execFileSync(process.execPath, [tsc, "-p", join(HERE, "types")], { encoding: "utf8", stdio: "pipe" });
  });
});
