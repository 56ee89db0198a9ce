from tests.router.conftest import *
import json, copy
base = sample("alertmanager-0.25-firing.json")
def v(f):
    d = copy.deepcopy(base); f(d); return json.dumps(d).encode()
def alert(**kw):
    def f(d): d["alerts"][0].update(kw)
    return v(f)
def delete(*keys):
    def f(d):
        for k in keys: del d[k]
    return v(f)
cases = {
 "text/plain": (sample_bytes("alertmanager-0.25-firing.json"), {"Content-Type": "text/plain"}),
 "no ctype": (sample_bytes("alertmanager-0.25-firing.json"), {}),
 "notjson": (b"{not json", JSON),
 "empty": (b"", JSON),
 "trailing garbage": (b'{"a":1} x', JSON),
 "utf8": (b'{"receiver":"\xff\xfe"}', JSON),
 "array": (b"[]", JSON), "string": (b'"x"', JSON), "num": (b"42", JSON), "null": (b"null", JSON), "true": (b"true", JSON),
 "v3": (v(lambda d: d.update(version="3")), JSON),
 "v4num": (v(lambda d: d.update(version=4)), JSON),
 "noversion": (delete("version"), JSON),
 "noreceiver": (delete("receiver"), JSON),
 "nostatus": (delete("status"), JSON),
 "noalerts": (delete("alerts"), JSON),
 "nogk": (delete("groupKey"), JSON),
 "alerts obj": (v(lambda d: d.update(alerts={})), JSON),
 "alerts str": (v(lambda d: d.update(alerts="x")), JSON),
 "alert not obj": (v(lambda d: d.update(alerts=[1])), JSON),
 "no labels": (v(lambda d: d["alerts"][0].pop("labels")), JSON),
 "empty labels": (alert(labels={}), JSON),
 "label int": (alert(labels={"alertname":"X","n":5}), JSON),
 "label null": (alert(labels={"alertname":"X","n":None}), JSON),
 "labels list": (alert(labels=["a"]), JSON),
 "ts bad": (alert(startsAt="yesterday"), JSON),
 "ts nooff": (alert(startsAt="2026-11-22T12:52:03"), JSON),
 "ts zero": (alert(startsAt="0001-01-01T00:00:00Z"), JSON),
 "ts int": (alert(startsAt=1700000000), JSON),
 "ts missing": (v(lambda d: d["alerts"][0].pop("startsAt")), JSON),
 "endsAt bad": (alert(endsAt="soon"), JSON),
 "status burning": (v(lambda d: d.update(status="burning")), JSON),
 "alert status": (alert(status="pending"), JSON),
 "trunc neg": (v(lambda d: d.update(truncatedAlerts=-1)), JSON),
 "trunc str": (v(lambda d: d.update(truncatedAlerts="3")), JSON),
 "nested": (b'{"version":"4","receiver":' + b'['*5000 + b']'*5000 + b'}', JSON),
 "nested deep": (b'['*100000 + b']'*100000, JSON),
 "receiver nested": (v(lambda d: d.update(receiver={"a":[{"b":[[[]]]}]})), JSON),
 "annotations int": (alert(annotations={"x":1}), JSON),
 "groupLabels list": (v(lambda d: d.update(groupLabels=[])), JSON),
 "fingerprint int": (alert(fingerprint=5), JSON),
 "second alert": (v(lambda d: d["alerts"].append({"status":"firing","labels":{"a":"b"},"startsAt":"x"})), JSON),
 "bom": (b"\xef\xbb\xbf" + sample_bytes("alertmanager-0.25-firing.json"), JSON),
 "charset latin1": (sample_bytes("alertmanager-0.25-firing.json"), {"Content-Type":"application/json; charset=latin-1"}),
 "nan": (v(lambda d: d.update(truncatedAlerts=0)).replace(b'"truncatedAlerts": 0', b'"truncatedAlerts": NaN'), JSON),
 "big": (b" "*9000, JSON),
}
async def test_probe(harness):
    c = harness.client
    for name, (body, h) in cases.items():
        r = await c.post(RECEIVER, data=body, headers={**BEARER_A, **h})
        t = await r.text()
        print(f"{name:20} {r.status} {t[:300]}")
