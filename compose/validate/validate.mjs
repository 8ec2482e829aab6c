// Validates the production shape under ROOT (compose/validate.sh calls it; it renders the k8s manifests first):
//   node validate.mjs ROOT RENDERED.yaml...
// 1. compose/docker-compose.yml against the Compose Specification schema (the copy dclint ships), then dclint's own
//    rules (errors only; off: its key-ordering rules, which are style, and no-build-and-image: `image` beside `build`
//    names the built image, the tag pushed for k8s), then what the schema cannot say: depends_on and named volumes
//    refer to what exists, every build's Dockerfile and target exists;
// 2. every object of each rendered kustomization against the Kubernetes schemas of kubernetes-models, unknown fields
//    included (the schemas alone allow them), and no API version Kubernetes has removed;
// 3. every Dockerfile with dockerfile-utils' linter (the VS Code Docker extension's), then the project's rules:
//    multi-stage, the image's last stage runs as a non-root user and says HEALTHCHECK (CMD or NONE).
// Prints one line per problem, naming the file and the field, and exits 1 if there is any.
import { readFileSync, existsSync, readdirSync, statSync } from "node:fs";
import { join, resolve, relative, dirname, basename } from "node:path";
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const tools = process.env.STREAMHEALTH_DEPLOY_TOOLS;
if (!tools || !existsSync(join(tools, "node_modules"))) {
  console.error(`validate: no validators at ${tools}/node_modules: run compose/local/setup.sh`);
  process.exit(2);
}
const require = createRequire(join(tools, "node_modules", "_"));
const YAML = require("yaml");
const Ajv = require("ajv");
const [root, ...rendered] = process.argv.slice(2).map((p) => resolve(p));
const problems = [];
const problem = (file, what) => problems.push(`${relative(root, file) || file}: ${what}`);
const yamlOptions = { merge: true, uniqueKeys: true, prettyErrors: true };

// ---- compose ------------------------------------------------------------------------------------------------
const composeFile = join(root, "compose", "docker-compose.yml");
let compose;
try {
  compose = YAML.parse(readFileSync(composeFile, "utf8"), yamlOptions);
} catch (e) {
  problem(composeFile, `not YAML: ${e.message.split("\n")[0]}`);
}
if (compose) {
  const schemaFile = join(tools, "node_modules", "dclint", "schemas", "compose.schema.json");
  const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false });
  const schema = JSON.parse(readFileSync(schemaFile, "utf8"));
  delete schema.$schema;   // "https://json-schema.org/draft-07/schema", which Ajv knows by its http:// name; draft-07 is its default
  const check = ajv.compile(schema);
  if (!check(compose)) {
    // oneOf/anyOf report every branch; the additional-property and type errors are the ones that name the mistake.
    for (const e of check.errors) {
      if (e.keyword === "oneOf" || e.keyword === "anyOf") continue;
      const extra = e.params?.additionalProperty ? ` '${e.params.additionalProperty}'` : "";
      problem(composeFile, `compose schema: ${e.instancePath || "/"} ${e.message}${extra}`);
    }
  }
  const dclint = join(tools, "node_modules", ".bin", "dclint");
  try {
    execFileSync(dclint, ["--quiet", composeFile, "--disable-rule", "service-keys-order",
      "--disable-rule", "services-alphabetical-order", "--disable-rule", "top-level-properties-order", "--disable-rule", "no-build-and-image"], { encoding: "utf8" });
  } catch (e) {
    const before = problems.length;
    for (const line of `${e.stdout ?? ""}`.replace(/\x1b\[[0-9;]*m/g, "").split("\n"))
      if (/\berror\b/.test(line)) problem(composeFile, `dclint: ${line.trim().replace(/\s+/g, " ")}`);
    if (problems.length === before) problem(composeFile, `dclint failed: ${e.message}`);
  }
  const services = compose.services ?? {};
  const volumes = compose.volumes ?? {};
  for (const [name, service] of Object.entries(services)) {
    const deps = Array.isArray(service.depends_on) ? service.depends_on : Object.keys(service.depends_on ?? {});
    for (const dep of deps) if (!(dep in services)) problem(composeFile, `services.${name}.depends_on: no service '${dep}'`);
    for (const v of service.volumes ?? []) {
      const source = typeof v === "string" ? v.split(":")[0] : v.type === "volume" ? v.source : undefined;
      if (source && !/^[./~$]/.test(source) && !(source in volumes)) problem(composeFile, `services.${name}.volumes: no volume '${source}' under volumes:`);
    }
    if (service.build) {
      const context = resolve(dirname(composeFile), typeof service.build === "string" ? service.build : service.build.context ?? ".");
      const dockerfile = join(context, service.build.dockerfile ?? "Dockerfile");
      if (!existsSync(dockerfile)) problem(composeFile, `services.${name}.build: no Dockerfile ${relative(root, dockerfile)}`);
      else if (service.build.target && !new RegExp(`^FROM\\s.+\\sAS\\s+${service.build.target}\\s*$`, "im").test(readFileSync(dockerfile, "utf8")))
        problem(composeFile, `services.${name}.build.target: no stage '${service.build.target}' in ${relative(root, dockerfile)}`);
    }
  }
}

// ---- Kubernetes ---------------------------------------------------------------------------------------------
const modelsDir = join(tools, "node_modules", "kubernetes-models");
// kubernetes-models keeps the schemas of API versions that Kubernetes has since removed (the deprecated-API migration
// guide): an object on one of them no longer applies to a current cluster.
const removedApis = {
  "extensions/v1beta1": "1.22", "apps/v1beta1": "1.16", "apps/v1beta2": "1.16", "networking.k8s.io/v1beta1": "1.22",
  "rbac.authorization.k8s.io/v1beta1": "1.22", "policy/v1beta1": "1.25", "batch/v1beta1": "1.25",
  "autoscaling/v2beta1": "1.25", "autoscaling/v2beta2": "1.26", "discovery.k8s.io/v1beta1": "1.25",
  "node.k8s.io/v1beta1": "1.25", "events.k8s.io/v1beta1": "1.25",
};
for (const output of rendered) {
  // compose/validate.sh names each rendering after what it rendered: k8s.yaml, k8s-optional-forecaster-gpu.yaml.
  const file = join(root, `${basename(output, ".yaml")} (kubectl kustomize)`);
  let docs;
  try {
    docs = YAML.parseAllDocuments(readFileSync(output, "utf8"), yamlOptions);
  } catch (e) {
    problem(file, `not YAML: ${e.message}`);
    continue;
  }
  for (const doc of docs) {
    const object = doc.toJS();
    if (!object) continue;
    const where = `${object.kind ?? "?"} ${object.metadata?.name ?? "?"}`;
    if (!object.apiVersion || !object.kind) {
      problem(file, `${where}: no apiVersion or kind`);
      continue;
    }
    if (object.apiVersion in removedApis) {
      problem(file, `${where}: ${object.apiVersion} was removed in Kubernetes ${removedApis[object.apiVersion]}`);
      continue;
    }
    // "apps/v1" → kubernetes-models/apps/v1/Deployment.js; the core group "v1" → kubernetes-models/v1/Service.js.
    const model = join(modelsDir, ...object.apiVersion.split("/"), `${object.kind}.js`);
    if (!existsSync(model)) {
      problem(file, `${where}: no Kubernetes schema for ${object.apiVersion} ${object.kind} (a removed or misspelt API)`);
      continue;
    }
    const Model = (await import(pathToFileURL(model).href))[object.kind];
    try {
      new Model(object).validate();
    } catch (e) {
      problem(file, `${where}: ${e.message}`);
      continue;
    }
    for (const path of await unknownFields(model, object)) problem(file, `${where}: unknown field ${path}`);
  }
}

// Unknown fields, as `kubectl apply --validate=strict` would refuse them: the schemas allow extra properties, so the
// object's schema function (the one the model class validates with) is run once more over proxies that record which
// properties it reads. It reads every property its schema declares, and enumerates the keys of a map (labels, limits);
// a key of a plain object that it neither read nor enumerated is one the schema does not know.
async function unknownFields(modelFile, object) {
  const source = readFileSync(modelFile, "utf8");
  const schemaImport = /import\s*\{\s*validate\s*\}\s*from\s*"([^"]+)"/.exec(source);
  if (!schemaImport) return [];
  const { validate } = await import(new URL(schemaImport[1], pathToFileURL(modelFile)).href);
  const tracked = [];
  const track = (value, path) => {
    if (Array.isArray(value)) return value.map((item, i) => track(item, `${path}[${i}]`));
    if (!value || typeof value !== "object") return value;
    const entry = { path, read: new Set(), enumerated: false, keys: Object.keys(value) };
    tracked.push(entry);
    const copy = Object.fromEntries(entry.keys.map((k) => [k, track(value[k], path ? `${path}.${k}` : k)]));
    return new Proxy(copy, {
      get: (target, key, receiver) => { if (typeof key === "string") entry.read.add(key); return Reflect.get(target, key, receiver); },
      has: (target, key) => { if (typeof key === "string") entry.read.add(key); return Reflect.has(target, key); },
      ownKeys: (target) => { entry.enumerated = true; return Reflect.ownKeys(target); },
    });
  };
  validate(track(object, ""));
  return tracked.filter((t) => !t.enumerated).flatMap((t) => t.keys.filter((k) => !t.read.has(k)).map((k) => (t.path ? `${t.path}.${k}` : k)));
}

// ---- Dockerfiles --------------------------------------------------------------------------------------------
function* dockerfiles(dir) {
  for (const entry of readdirSync(dir)) {
    if ([".git", ".local", "bin", "obj", "node_modules"].includes(entry)) continue;
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) yield* dockerfiles(path);
    else if (entry === "Dockerfile" || entry.endsWith(".Dockerfile")) yield path;
  }
}
const linter = join(tools, "node_modules", ".bin", "dockerfile-utils");
let dockerfileCount = 0;
for (const file of dockerfiles(root)) {
  dockerfileCount++;
  try {
    execFileSync(linter, ["lint", file], { encoding: "utf8" });
  } catch (e) {
    const report = `${e.stdout ?? ""}`.trim().replace(/\n+/g, " | ");
    problem(file, `dockerfile-utils: ${report || e.message}`);
  }
  // Instructions with their continuation lines joined; comments dropped.
  const instructions = readFileSync(file, "utf8").replace(/\\\r?\n/g, " ").split(/\r?\n/)
    .map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  const stages = [];
  for (const line of instructions) {
    const [keyword, ...rest] = line.split(/\s+/);
    if (/^FROM$/i.test(keyword)) stages.push({ from: line, user: undefined, healthcheck: false, entry: false });
    else if (stages.length && /^USER$/i.test(keyword)) stages.at(-1).user = rest.join(" ");
    else if (stages.length && /^HEALTHCHECK$/i.test(keyword)) stages.at(-1).healthcheck = true;
    else if (stages.length && /^(ENTRYPOINT|CMD)$/i.test(keyword)) stages.at(-1).entry = true;
  }
  if (stages.length < 2) problem(file, "not multi-stage: build with the SDK in one stage, run on the runtime image in another");
  // Stages an image ends in: every stage that says ENTRYPOINT or CMD (the default last one and named targets such as gpu).
  const finals = stages.filter((s, i) => i === stages.length - 1 || s.entry);
  for (const stage of finals) {
    if (!stage.user || /^(root|0)(:|$)/.test(stage.user)) problem(file, `stage '${stage.from}': runs as root (no USER, or USER root)`);
    if (!stage.healthcheck) problem(file, `stage '${stage.from}': no HEALTHCHECK (say HEALTHCHECK NONE when the image opens no port)`);
  }
}
if (dockerfileCount === 0) problem(root, "no Dockerfile found");

for (const p of problems) console.log(`INVALID ${p}`);
if (problems.length) {
  console.log(`validate: ${problems.length} problem(s)`);
  process.exit(1);
}
console.log(`validate: compose, ${rendered.length} rendered kustomization(s), ${dockerfileCount} Dockerfile(s): valid`);
