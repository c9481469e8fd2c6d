// Validates the custom resources in rendered manifests (stdin, multi-document YAML)
// with the CRD schemas that @kubernetes-models compiles from prometheus-operator
// and KEDA: field types, required fields and enums. Unknown fields pass, as in
// the CRDs themselves. Core kinds are left to kubernetes-validate.
// Run from a folder whose node_modules holds: yaml @kubernetes-models/keda
// @kubernetes-models/prometheus-operator (deploy/check.sh sets that up).
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication";

const models = {
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor,
  "monitoring.coreos.com/v1/PrometheusRule": PrometheusRule,
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
  "keda.sh/v1alpha1/TriggerAuthentication": TriggerAuthentication,
};

const source = process.argv[2] ?? "(stdin)";
let failed = 0;
let checked = 0;
for (const doc of parseAllDocuments(readFileSync(0, "utf8"))) {
  if (doc.errors.length) {
    console.error(`ERROR ${source}: ${doc.errors[0].message}`);
    failed++;
    continue;
  }
  const object = doc.toJS();
  if (!object) continue;
  const group = String(object.apiVersion ?? "").split("/");
  if (group.length === 1 || !group[0].includes(".") || group[0].endsWith(".k8s.io")) continue;
  const id = `${object.apiVersion}/${object.kind}`;
  const name = `${object.kind}/${object.metadata?.name}`;
  const Model = models[id];
  if (!Model) {
    console.error(`ERROR ${source}: no schema for ${id} (${name}); add its model to this script`);
    failed++;
    continue;
  }
  try {
    new Model(object).validate();
    checked++;
    console.log(`INFO ${source}: ${name} passed against the ${object.apiVersion} CRD schema`);
  } catch (error) {
    console.error(`ERROR ${source}: ${name}: ${error.message}`);
    failed++;
  }
}
console.log(`${checked} custom resources valid, ${failed} failed`);
process.exit(failed ? 1 : 0);
