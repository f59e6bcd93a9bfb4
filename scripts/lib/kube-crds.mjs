// Validates PodMonitor and PrometheusRule documents (a JSON list of {file, doc} on
// stdin) against the monitoring.coreos.com/v1 CRDs' OpenAPI schemas, as compiled in
// the npm package @kubernetes-models/prometheus-operator, found in $KUBE_MODELS (a
// node_modules directory). Prints each error and exits 1 when there is one.
import { readFileSync } from "node:fs";
import { join } from "node:path";

const models = join(process.env.KUBE_MODELS, "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1");
const items = JSON.parse(readFileSync(0, "utf8"));
let failed = false;
for (const { file, doc } of items) {
  if (doc.apiVersion !== "monitoring.coreos.com/v1") {
    console.error(`${file}: ${doc.kind} has apiVersion ${doc.apiVersion}, not monitoring.coreos.com/v1`);
    failed = true;
    continue;
  }
  const model = (await import(join(models, `${doc.kind}.js`)))[doc.kind];
  try {
    new model(doc).validate();
  } catch (e) {
    console.error(`${file}: ${doc.kind}: ${e.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
