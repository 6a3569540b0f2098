"""ValidatingAdmissionPolicies evaluated as the API server does, with Google's CEL runtime.

No API server can run on this project's machines, so the policies the
injector chart renders are evaluated here: matching (resource rules, namespace
and object selectors), parameters (`paramKind`/`paramRef`, including
`parameterNotFoundAction` and the default to the request's namespace),
`matchConditions`, `variables`, `validations` with `message`,
`messageExpression` and `reason`, `failurePolicy` and `validationActions`,
following the order and rules of k8s.io/apiserver's validating admission
policy plugin (a request about a Namespace carries the namespace's own name,
and is cluster-scoped). Expressions run on `cel-expr-python` (the C++ CEL runtime)
with the optional-types and strings extensions, the subset of CEL that
Kubernetes also has. Kubernetes compiles `object`, `oldObject` and `params` as
`dyn`; so does this module, and a policy that uses a Kubernetes-only function
fails to compile here.

Variables are evaluated in order, each seeing the earlier ones; one that fails
is left out of `variables`, so an expression that reads it fails as it would
on the API server, where variables are evaluated lazily and an error surfaces
only where a variable is used.
"""

from __future__ import annotations

import copy
import dataclasses
import uuid
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext import ext_optional, ext_strings

_ROOTS = ("object", "oldObject", "params", "request", "namespaceObject", "variables")

_ENV = cel.NewEnv(
    variables={name: cel.Type.DYN for name in _ROOTS},
    extensions=[ext_optional.ExtOptional(), ext_strings.ExtStrings()],
)


class CelError(Exception):
    """An expression that does not compile or fails at runtime."""


def compile_expression(expression: str):
    try:
        return _ENV.compile(expression)
    except Exception as err:  # the runtime raises plain RuntimeError
        raise CelError(f"does not compile: {expression!r}: {err}") from None


def evaluate(program, data: dict[str, Any]) -> Any:
    value = program.eval(data=data)
    if value.type() == cel.Type.ERROR:
        raise CelError(str(value.plain_value()))
    return value.plain_value()


# --------------------------------------------------------------------------
# Matching


def selector_matches(selector: dict | None, labels: dict[str, str] | None) -> bool:
    """A metav1.LabelSelector; an absent or empty one matches everything."""
    labels = labels or {}
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In":
            ok = key in labels and labels[key] in values
        elif op == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif op == "Exists":
            ok = key in labels
        elif op == "DoesNotExist":
            ok = key not in labels
        else:
            raise ValueError(f"unknown selector operator {op}")
        if not ok:
            return False
    return True


def _wildcard(patterns: list[str], value: str) -> bool:
    return "*" in patterns or value in patterns


def _resource_matches(patterns: list[str], resource: str, subresource: str) -> bool:
    """`pods`, `pods/ephemeralcontainers`, `pods/*`, `*/status` and `*`."""
    full = f"{resource}/{subresource}" if subresource else resource
    for pattern in patterns:
        if pattern == "*" and not subresource:
            return True
        if pattern == "*/*" or pattern == full:
            return True
        if subresource and (pattern == f"{resource}/*" or pattern == f"*/{subresource}"):
            return True
    return False


@dataclasses.dataclass
class Request:
    """What the API server knows about one admission request."""

    operation: str
    object: dict | None
    old_object: dict | None = None
    namespace: str = ""
    resource: str = "pods"
    subresource: str = ""
    group: str = ""
    version: str = "v1"
    kind: str = "Pod"
    username: str = "system:serviceaccount:team-a:deployer"
    # The name of the object the request is about, when the object itself
    # does not carry it (CONNECT: the object is PodExecOptions).
    object_name: str = ""

    def __post_init__(self):
        # For requests about a Namespace itself the API server sets the
        # request's namespace to the namespace's own name (see the scope
        # rule in k8s.io/apiserver's admission rule matcher).
        if self.resource == "namespaces" and not self.namespace:
            self.namespace = self.name

    @property
    def name(self) -> str:
        obj = self.object or self.old_object or {}
        return obj.get("metadata", {}).get("name", "") or self.object_name

    def as_cel(self) -> dict:
        """The `request` variable (admission.k8s.io/v1 AdmissionRequest)."""
        gvk = {"group": self.group, "version": self.version, "kind": self.kind}
        gvr = {"group": self.group, "version": self.version, "resource": self.resource}
        return {
            "uid": str(uuid.uuid4()),
            "kind": gvk,
            "resource": gvr,
            "subResource": self.subresource,
            "requestKind": gvk,
            "requestResource": gvr,
            "requestSubResource": self.subresource,
            "name": self.name,
            "namespace": self.namespace,
            "operation": self.operation,
            "userInfo": {"username": self.username, "groups": ["system:authenticated"]},
            "dryRun": False,
        }


def _rule_matches(rule: dict, req: Request) -> bool:
    # A Namespace is cluster-scoped although its requests carry a namespace.
    scope = rule.get("scope", "*")
    if scope == "Namespaced" and (req.resource == "namespaces" or not req.namespace):
        return False
    if scope == "Cluster" and req.resource != "namespaces" and req.namespace:
        return False
    return (
        _wildcard(rule.get("operations") or [], req.operation)
        and _wildcard(rule.get("apiGroups") or [], req.group)
        and _wildcard(rule.get("apiVersions") or [], req.version)
        and _resource_matches(rule.get("resources") or [], req.resource, req.subresource)
    )


def _match_resources(match: dict | None, req: Request, namespaces: dict[str, dict], *, rules_required: bool) -> bool:
    match = match or {}
    # Other cluster-scoped objects are never excluded by a namespaceSelector,
    # and an empty one matches without a look-up.
    if req.namespace and (match.get("namespaceSelector") or {}):
        if req.resource == "namespaces" and not req.subresource and req.operation in ("CREATE", "UPDATE"):
            # A Namespace being created or updated: its new labels, since the
            # API server's namespace cache does not have them yet.
            ns_labels = req.object["metadata"].get("labels", {})
        else:
            ns_labels = namespaces[req.namespace]["metadata"].get("labels", {})
        if not selector_matches(match.get("namespaceSelector"), ns_labels):
            return False
    if "objectSelector" in match:
        candidates = [o for o in (req.object, req.old_object) if o is not None]
        if not any(selector_matches(match["objectSelector"], o["metadata"].get("labels", {})) for o in candidates):
            return False
    rules = match.get("resourceRules") or []
    if rules or rules_required:
        if not any(_rule_matches(rule, req) for rule in rules):
            return False
    if any(_rule_matches(rule, req) for rule in match.get("excludeResourceRules") or []):
        return False
    return True


# --------------------------------------------------------------------------
# Evaluation


@dataclasses.dataclass
class Failure:
    """A validation that did not pass, or an error that the failure policy turned into a denial."""

    policy: str
    message: str
    reason: str = "Invalid"
    validation: int | None = None  # index in spec.validations, None for errors


@dataclasses.dataclass
class Verdict:
    allowed: bool
    failures: list[Failure]
    warnings: list[str]
    evaluated: list[str]  # policies whose validations ran

    @property
    def messages(self) -> list[str]:
        return [f.message for f in self.failures]


class CompiledPolicy:
    """One ValidatingAdmissionPolicy, every expression compiled up front as
    the API server does when the policy is created."""

    def __init__(self, policy: dict):
        assert policy["apiVersion"] == "admissionregistration.k8s.io/v1", policy["apiVersion"]
        assert policy["kind"] == "ValidatingAdmissionPolicy"
        self.name = policy["metadata"]["name"]
        self.spec = policy["spec"]
        self.failure_policy = self.spec.get("failurePolicy", "Fail")
        self.match_conditions = [
            (mc["name"], mc["expression"], compile_expression(mc["expression"]))
            for mc in self.spec.get("matchConditions", [])
        ]
        names = [v["name"] for v in self.spec.get("variables", [])]
        assert len(names) == len(set(names)), f"duplicate variable names in {self.name}"
        self.variables = [
            (v["name"], compile_expression(v["expression"])) for v in self.spec.get("variables", [])
        ]
        self.validations = []
        for v in self.spec.get("validations", []):
            for key in ("message",):
                assert "\n" not in v.get(key, ""), f"{key} must be one line: {v[key]!r}"
            self.validations.append(
                (
                    v,
                    compile_expression(v["expression"]),
                    compile_expression(v["messageExpression"]) if "messageExpression" in v else None,
                )
            )

    def _message(self, validation: dict, message_program, data: dict) -> str:
        # The API server uses messageExpression's result when it is a
        # non-blank one-line string, else message, else the expression.
        if message_program is not None:
            try:
                text = evaluate(message_program, data)
            except CelError:
                text = None
            if isinstance(text, str) and text.strip() and "\n" not in text:
                return text
        if validation.get("message"):
            return validation["message"]
        return f"failed expression: {validation['expression']}"

    def evaluate(self, data: dict) -> tuple[bool, list[Failure]]:
        """Runs matchConditions, variables and validations on one activation.
        Returns (applies, failures)."""
        errors = []
        for name, expression, program in self.match_conditions:
            try:
                result = evaluate(program, data)
            except CelError as err:
                errors.append(f"matchCondition {name}: {err}")
                continue
            if result is not True:
                if result is False:
                    return False, []
                errors.append(f"matchCondition {name} is not a boolean: {result!r}")
        if errors:
            if self.failure_policy == "Fail":
                return True, [Failure(self.name, "; ".join(errors))]
            return False, []

        variables: dict[str, Any] = {}
        variable_errors: dict[str, str] = {}
        data = dict(data, variables=variables)
        for name, program in self.variables:
            try:
                variables[name] = evaluate(program, dict(data, variables=dict(variables)))
            except CelError as err:
                variable_errors[name] = str(err)
        data["variables"] = variables

        failures = []
        for index, (validation, program, message_program) in enumerate(self.validations):
            try:
                result = evaluate(program, data)
                if not isinstance(result, bool):
                    raise CelError(f"result is not a boolean: {result!r}")
            except CelError as err:
                if self.failure_policy == "Fail":
                    context = f" (failed variables: {variable_errors})" if variable_errors else ""
                    failures.append(
                        Failure(self.name, f"expression {validation['expression']!r} resulted in error: {err}{context}")
                    )
                continue
            if not result:
                failures.append(
                    Failure(
                        self.name,
                        self._message(validation, message_program, data),
                        validation.get("reason", "Invalid"),
                        index,
                    )
                )
        return True, failures


class Cluster:
    """The objects admission reads: namespaces and parameter objects."""

    def __init__(self, namespaces: list[dict] = (), objects: list[dict] = ()):
        self.namespaces = {ns["metadata"]["name"]: ns for ns in namespaces}
        self.objects = list(objects)

    def find(self, api_version: str, kind: str, name: str, namespace: str | None) -> dict | None:
        for obj in self.objects:
            meta = obj["metadata"]
            if (
                obj["apiVersion"] == api_version
                and obj["kind"] == kind
                and meta["name"] == name
                and meta.get("namespace") == namespace
            ):
                return obj
        return None


class Admission:
    """The validating admission policies of a cluster and their bindings."""

    def __init__(self, policies: list[dict], bindings: list[dict], cluster: Cluster):
        self.policies = {p["metadata"]["name"]: CompiledPolicy(p) for p in policies}
        self.bindings = bindings
        self.cluster = cluster
        for b in bindings:
            assert b["apiVersion"] == "admissionregistration.k8s.io/v1"
            assert b["spec"]["policyName"] in self.policies, b["spec"]["policyName"]

    def review(self, req: Request) -> Verdict:
        if req.namespace and req.resource != "namespaces":
            assert req.namespace in self.cluster.namespaces, f"namespace {req.namespace} does not exist"
        failures: list[Failure] = []
        warnings: list[str] = []
        evaluated: list[str] = []
        for binding in self.bindings:
            spec = binding["spec"]
            policy = self.policies[spec["policyName"]]
            if not _match_resources(policy.spec.get("matchConstraints"), req, self.cluster.namespaces, rules_required=True):
                continue
            if not _match_resources(spec.get("matchResources"), req, self.cluster.namespaces, rules_required=False):
                continue
            params = None
            if "paramKind" in policy.spec:
                ref = spec.get("paramRef")
                assert ref is not None, f"binding {binding['metadata']['name']} has no paramRef"
                assert "name" in ref, "paramRef.selector is not supported here"
                kind = policy.spec["paramKind"]
                namespace = ref.get("namespace") or req.namespace or None
                params = self.cluster.find(kind["apiVersion"], kind["kind"], ref["name"], namespace)
                if params is None:
                    if ref.get("parameterNotFoundAction", "Deny") == "Deny":
                        failures.append(
                            Failure(policy.name, f"no params found for policy binding with `Deny` parameterNotFoundAction: {kind['kind']} {namespace}/{ref['name']}")
                        )
                    continue
            data = {
                "object": copy.deepcopy(req.object),
                "oldObject": copy.deepcopy(req.old_object),
                "params": copy.deepcopy(params),
                "request": req.as_cel(),
                "namespaceObject": copy.deepcopy(self.cluster.namespaces.get(req.namespace)),
            }
            applies, found = policy.evaluate(data)
            if not applies:
                continue
            evaluated.append(policy.name)
            actions = spec["validationActions"]
            if "Deny" in actions:
                failures.extend(found)
            if "Warn" in actions:
                warnings.extend(f.message for f in found)
        return Verdict(allowed=not failures, failures=failures, warnings=warnings, evaluated=evaluated)
