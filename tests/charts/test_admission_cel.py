"""The admission evaluator itself, on small hand-written policies.

The chart's policy tests are only as good as the evaluator they run on, so
each rule of the API server's validating admission policy plugin that they
rely on is checked here on its own: matching by resource, subresource,
operation and namespace selector; parameters and parameterNotFoundAction;
matchConditions and failurePolicy; variables, errors included; validations,
message and messageExpression; validationActions.
"""

from __future__ import annotations

import pytest

try:
    from .admission_cel import Admission, CelError, Cluster, Request, compile_expression, selector_matches
except ImportError:
    from admission_cel import Admission, CelError, Cluster, Request, compile_expression, selector_matches

V1 = "admissionregistration.k8s.io/v1"


def policy(spec: dict, name: str = "p") -> dict:
    base = {
        "matchConstraints": {
            "resourceRules": [
                {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["pods"]}
            ]
        },
        "validations": [{"expression": "true"}],
    }
    return {"apiVersion": V1, "kind": "ValidatingAdmissionPolicy", "metadata": {"name": name}, "spec": {**base, **spec}}


def binding(spec: dict | None = None, policy_name: str = "p") -> dict:
    return {
        "apiVersion": V1,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": f"{policy_name}-binding"},
        "spec": {"policyName": policy_name, "validationActions": ["Deny"], **(spec or {})},
    }


NAMESPACES = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "labels": {"team": "a"}}},
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b", "labels": {"team": "b"}}},
]


def pod(**spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}], **spec}}


def admit(p: dict, b: dict | None = None, objects=(), req: Request | None = None):
    admission = Admission([p], [b or binding()], Cluster(NAMESPACES, list(objects)))
    return admission.review(req or Request("CREATE", pod(), namespace="a"))


def test_a_false_validation_denies_with_its_message():
    verdict = admit(policy({"validations": [{"expression": "object.spec.containers.size() > 1", "message": "two please"}]}))
    assert not verdict.allowed
    assert verdict.messages == ["two please"]
    assert admit(policy({"validations": [{"expression": "object.spec.containers.size() == 1"}]})).allowed


def test_message_expression_wins_unless_it_fails_or_is_blank():
    def message(expr: str) -> str:
        v = {"expression": "false", "message": "static", "messageExpression": expr}
        return admit(policy({"validations": [v]})).messages[0]

    assert message("'container ' + object.spec.containers[0].name") == "container c"
    assert message("object.nope") == "static"
    assert message("'  '") == "static"
    assert message("'two\\nlines'") == "static"
    v = {"expression": "1 == 2"}
    assert admit(policy({"validations": [v]})).messages == ["failed expression: 1 == 2"]


def test_errors_follow_the_failure_policy():
    failing = {"validations": [{"expression": "object.spec.nope == 1"}]}
    verdict = admit(policy(failing))
    assert not verdict.allowed and "resulted in error" in verdict.messages[0]
    assert admit(policy({**failing, "failurePolicy": "Ignore"})).allowed
    not_bool = {"validations": [{"expression": "'yes'"}]}
    assert not admit(policy(not_bool)).allowed


def test_match_conditions():
    cond = lambda expr: {"matchConditions": [{"name": "c", "expression": expr}], "validations": [{"expression": "false"}]}
    assert not admit(policy(cond("true"))).allowed
    verdict = admit(policy(cond("false")))
    assert verdict.allowed and verdict.evaluated == []
    # An error denies under Fail and skips under Ignore; a false condition
    # wins over an error.
    assert not admit(policy(cond("object.nope"))).allowed
    assert admit(policy({**cond("object.nope"), "failurePolicy": "Ignore"})).allowed
    two = {"matchConditions": [{"name": "e", "expression": "object.nope"}, {"name": "f", "expression": "false"}],
           "validations": [{"expression": "false"}]}
    assert admit(policy(two)).allowed


def test_variables_compose_and_fail_only_where_used():
    spec = {
        "variables": [
            {"name": "names", "expression": "object.spec.containers.map(c, c.name)"},
            {"name": "count", "expression": "variables.names.size()"},
            {"name": "broken", "expression": "object.spec.nope"},
        ],
        "validations": [{"expression": "variables.count == 1 && variables.names == ['c']"}],
    }
    assert admit(policy(spec)).allowed
    spec["validations"].append({"expression": "variables.broken == 1"})
    verdict = admit(policy(spec))
    assert not verdict.allowed and "broken" in verdict.messages[0]
    # Absorbed like any CEL error: true || error is true.
    spec["validations"][-1] = {"expression": "true || variables.broken == 1"}
    assert admit(policy(spec)).allowed


def test_resources_subresources_and_operations():
    p = policy({"matchConstraints": {"resourceRules": [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["pods/ephemeralcontainers"]}
    ]}, "validations": [{"expression": "false"}]})
    old = pod()
    assert not admit(p, req=Request("UPDATE", pod(), old, namespace="a", subresource="ephemeralcontainers")).allowed
    assert admit(p, req=Request("UPDATE", pod(), old, namespace="a")).allowed
    assert admit(p, req=Request("CREATE", pod(), namespace="a")).allowed
    everything = policy({"matchConstraints": {"resourceRules": [
        {"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"], "resources": ["*"]}
    ]}, "validations": [{"expression": "false"}]})
    # "*" matches resources but not their subresources.
    assert not admit(everything).allowed
    assert admit(everything, req=Request("UPDATE", pod(), old, namespace="a", subresource="status")).allowed


def test_namespace_selectors_of_policy_and_binding():
    p = policy({"validations": [{"expression": "false"}]})
    b = binding({"matchResources": {"namespaceSelector": {"matchLabels": {"team": "a"}}}})
    assert not admit(p, b, req=Request("CREATE", pod(), namespace="a")).allowed
    assert admit(p, b, req=Request("CREATE", pod(), namespace="b")).allowed
    assert selector_matches({"matchExpressions": [{"key": "x", "operator": "NotIn", "values": ["1"]}]}, {})
    assert not selector_matches({"matchExpressions": [{"key": "x", "operator": "In", "values": ["1"]}]}, {})
    assert selector_matches({"matchExpressions": [{"key": "x", "operator": "Exists"}]}, {"x": ""})


def test_parameters():
    p = policy({
        "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
        "validations": [{"expression": "object.spec.containers[0].name == params.data.name"}],
    })
    cm = lambda ns, name: {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": ns}, "data": {"name": name}}
    pinned = binding({"paramRef": {"name": "cfg", "namespace": "b", "parameterNotFoundAction": "Deny"}})
    assert admit(p, pinned, [cm("b", "c")]).allowed
    assert not admit(p, pinned, [cm("b", "other")]).allowed
    verdict = admit(p, pinned, [cm("a", "c")])
    assert not verdict.allowed and "no params found" in verdict.messages[0]
    allow = binding({"paramRef": {"name": "cfg", "namespace": "b", "parameterNotFoundAction": "Allow"}})
    assert admit(p, allow, []).allowed
    # Without a namespace, the parameters come from the request's namespace.
    loose = binding({"paramRef": {"name": "cfg", "parameterNotFoundAction": "Deny"}})
    assert admit(p, loose, [cm("a", "c"), cm("b", "other")]).allowed


def test_only_deny_actions_deny():
    p = policy({"validations": [{"expression": "false", "message": "no"}]})
    verdict = admit(p, binding({"validationActions": ["Warn"]}))
    assert verdict.allowed and verdict.warnings == ["no"]


def test_kubernetes_only_functions_do_not_compile_here():
    with pytest.raises(CelError):
        compile_expression("quantity('1Gi').isGreaterThan(quantity('1Mi'))")
    with pytest.raises(CelError):
        compile_expression("authorizer.group('').resource('pods').check('get').allowed()")


def test_requests_about_a_namespace_carry_its_name_and_are_cluster_scoped():
    """As in k8s.io/apiserver's rule matcher: a Namespace request's namespace
    is the namespace's own name, yet it matches scope Cluster, not
    Namespaced; a namespaceSelector sees the new labels on CREATE and
    UPDATE, and the stored ones on its subresources."""
    def rules(scope):
        return {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                                   "resources": ["namespaces", "namespaces/status"], "scope": scope}]}

    deny = {"validations": [{"expression": "request.namespace != 'a'", "message": "seen"}]}
    stored = NAMESPACES[0]
    relabelled = {**stored, "metadata": {"name": "a", "labels": {"team": "x"}}}
    update = Request("UPDATE", relabelled, stored, resource="namespaces", kind="Namespace")
    assert update.namespace == "a"
    assert admit(policy({"matchConstraints": rules("Cluster"), **deny}), req=update).messages == ["seen"]
    assert admit(policy({"matchConstraints": rules("Namespaced"), **deny}), req=update).evaluated == []
    selected = binding({"matchResources": {"namespaceSelector": {"matchLabels": {"team": "a"}}}})
    p = policy({"matchConstraints": rules("*"), **deny})
    assert admit(p, selected, req=update).evaluated == []
    status = Request("UPDATE", relabelled, stored, resource="namespaces", subresource="status", kind="Namespace")
    assert admit(p, selected, req=status).messages == ["seen"]
    new = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "c", "labels": {"team": "a"}}}
    create = Request("CREATE", new, resource="namespaces", kind="Namespace")
    assert admit(p, selected, req=create).evaluated == ["p"]
