#!/usr/bin/env python3
"""An independent reader of the switchboard's DynamoDB tables, with AWS's own Python SDK
(boto3), run by tests/it/dynamo.rs. It checks that what the switchboard stored is what the
classic six-table layout (Calls, Transcripts, Summaries, Transfers, Agents, Rooms) holds: the
same table names, key schemas, index names and camelCase attribute names and types, readable
the way that layout's earlier clients read them.

Usage:
  dynamo_check.py check-flow ENDPOINT PREFIX CALL_ID TRANSFER_ID AGENT_A AGENT_B
  dynamo_check.py put-seed-agent ENDPOINT PREFIX AGENT_ID NAME
  dynamo_check.py check-agent ENDPOINT PREFIX AGENT_ID NAME

Exit status: 0 all good (a JSON summary on stdout), 1 a check failed (the reason on
stderr), 2 the script cannot run (boto3 missing, bad usage).
"""

import json
import sys
from datetime import datetime

try:
    import boto3
    from boto3.dynamodb.conditions import Key
except ImportError as e:  # pragma: no cover - reported to the Rust test
    print(f"boto3 is missing ({e}); python3 -m pip install -r tests/py/requirements.txt", file=sys.stderr)
    sys.exit(2)

SEED_TABLES = {
    # table: (key attribute, {index name: index hash key})
    "Calls": ("callId", {"agentAId-index": "agentAId"}),
    "Transcripts": ("transcriptId", {"callId-index": "callId"}),
    "Summaries": ("summaryId", {"callId-index": "callId"}),
    "Transfers": ("transferId", {"callId-index": "callId"}),
    "Agents": ("agentId", {}),
    "Rooms": ("roomId", {}),
}

# the classic layout's attributes, each a string except Agents.active (a boolean).
SEED_ATTRIBUTES = {
    "Calls": ["callId", "callerId", "agentAId", "agentBId", "status", "createdAt", "lastSummaryId"],
    "Transcripts": ["transcriptId", "callId", "text", "source", "createdAt"],
    "Summaries": ["summaryId", "callId", "summaryText", "model", "createdAt"],
    "Transfers": ["transferId", "callId", "fromAgentId", "toAgentId", "transferRoom", "summaryId", "status", "createdAt"],
    "Agents": ["agentId", "name", "active", "createdAt"],
    "Rooms": ["roomId", "roomName", "ownerId", "status", "createdAt"],
}


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def clients(endpoint):
    args = dict(
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return boto3.client("dynamodb", **args), boto3.resource("dynamodb", **args)


def iso(value, what):
    check(isinstance(value, str), f"{what} is not a string: {value!r}")
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"{what} is not an ISO timestamp: {value!r}")


def raw_types(client, table, key):
    """The DynamoDB type letter of every attribute of one item (low-level API)."""
    item = client.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
    check(item is not None, f"no item {key} in {table}")
    return {name: next(iter(value)) for name, value in item.items()}


def seed_attributes(table_role, item, raw):
    for name in SEED_ATTRIBUTES[table_role]:
        check(name in item, f"{table_role} item lacks classic attribute {name}: {sorted(item)}")
        want = "BOOL" if (table_role, name) == ("Agents", "active") else "S"
        check(raw[name] == want, f"{table_role}.{name} is {raw[name]}, the classic layout has {want}")
    check("NULL" not in raw.values(), f"{table_role} item has NULL attributes: {raw}")
    iso(item["createdAt"], f"{table_role}.createdAt")


def check_schema(client, prefix):
    tables = set()
    for page in client.get_paginator("list_tables").paginate():
        tables.update(page["TableNames"])
    for role, (key, indexes) in SEED_TABLES.items():
        name = prefix + role
        check(name in tables, f"table {name} does not exist; tables: {sorted(t for t in tables if t.startswith(prefix))}")
        d = client.describe_table(TableName=name)["Table"]
        check(
            d["KeySchema"] == [{"AttributeName": key, "KeyType": "HASH"}],
            f"{name} key schema is {d['KeySchema']}, expected {key} HASH",
        )
        types = {a["AttributeName"]: a["AttributeType"] for a in d["AttributeDefinitions"]}
        check(types[key] == "S", f"{name}.{key} is {types[key]}, expected S")
        have = {g["IndexName"]: g for g in d.get("GlobalSecondaryIndexes", [])}
        for index, hash_key in indexes.items():
            check(index in have, f"{name} has no index {index}: {sorted(have)}")
            check(
                have[index]["KeySchema"][0] == {"AttributeName": hash_key, "KeyType": "HASH"},
                f"{name}.{index} key is {have[index]['KeySchema']}",
            )
    for extra in ["Events", "CallAgents", "OpenCalls", "WebhookDeliveries"]:
        check(prefix + extra in tables, f"table {prefix + extra} does not exist")


def check_flow(endpoint, prefix, call_id, transfer_id, agent_a, agent_b):
    client, db = clients(endpoint)
    check_schema(client, prefix)
    t = lambda role: db.Table(prefix + role)  # noqa: E731

    call = t("Calls").get_item(Key={"callId": call_id}, ConsistentRead=True).get("Item")
    check(call is not None, f"call {call_id} not in {prefix}Calls")
    raw = raw_types(client, prefix + "Calls", {"callId": {"S": call_id}})
    seed_attributes("Calls", call, raw)
    check(call["agentAId"] == agent_a, f"agentAId is {call['agentAId']!r}")
    check(call["agentBId"] == agent_b, f"agentBId is {call['agentBId']!r}")
    check(call["status"] in ("queued", "ringing", "active", "on_hold", "transferring", "ended"), call["status"])
    check(raw["version"] == "N" and int(call["version"]) >= 1, f"version is {raw['version']} {call['version']}")
    check(raw["state"] == "S", f"state is {raw['state']}")
    json.loads(call["state"])  # the machine state is JSON text

    # the classic layout lists an agent's calls through agentAId-index.
    by_agent = t("Calls").query(IndexName="agentAId-index", KeyConditionExpression=Key("agentAId").eq(agent_a))["Items"]
    mine = [c for c in by_agent if c["callId"] == call_id]
    check(len(mine) == 1, f"agentAId-index does not list call {call_id} for {agent_a}")
    for name in ("callerId", "agentBId", "status", "createdAt", "lastSummaryId"):
        check(name in mine[0], f"agentAId-index does not project {name}: {sorted(mine[0])}")

    summary = t("Summaries").get_item(Key={"summaryId": call["lastSummaryId"]}, ConsistentRead=True).get("Item")
    check(summary is not None, f"lastSummaryId {call['lastSummaryId']} is not in {prefix}Summaries")
    seed_attributes("Summaries", summary, raw_types(client, prefix + "Summaries", {"summaryId": {"S": summary["summaryId"]}}))
    check(summary["callId"] == call_id, "the summary belongs to another call")

    transcripts = t("Transcripts").query(IndexName="callId-index", KeyConditionExpression=Key("callId").eq(call_id))["Items"]
    check(transcripts, f"callId-index of {prefix}Transcripts has nothing for {call_id}")
    for tx in transcripts:
        seed_attributes("Transcripts", tx, raw_types(client, prefix + "Transcripts", {"transcriptId": {"S": tx["transcriptId"]}}))
        check(tx["source"] in ("manual", "whisper", "livekit", "twilio"), tx["source"])
    check(any("charged twice" in tx["text"] for tx in transcripts), "the posted transcript text is not stored")

    transfer = t("Transfers").get_item(Key={"transferId": transfer_id}, ConsistentRead=True).get("Item")
    check(transfer is not None, f"transfer {transfer_id} not stored")
    seed_attributes("Transfers", transfer, raw_types(client, prefix + "Transfers", {"transferId": {"S": transfer_id}}))
    check(
        (transfer["callId"], transfer["fromAgentId"], transfer["toAgentId"], transfer["status"])
        == (call_id, agent_a, agent_b, "completed"),
        f"transfer is {transfer}",
    )
    check(t("Summaries").get_item(Key={"summaryId": transfer["summaryId"]}).get("Item") is not None, "transfer.summaryId dangles")
    of_call = t("Transfers").query(IndexName="callId-index", KeyConditionExpression=Key("callId").eq(call_id))["Items"]
    check(transfer_id in {x["transferId"] for x in of_call}, "callId-index of Transfers misses the transfer")

    for agent in (agent_a, agent_b):
        item = t("Agents").get_item(Key={"agentId": agent}, ConsistentRead=True).get("Item")
        check(item is not None, f"agent {agent} not stored")
        seed_attributes("Agents", item, raw_types(client, prefix + "Agents", {"agentId": {"S": agent}}))
        check(item["active"] is True, f"agent {agent} active is {item['active']!r}")

    rooms = []
    kwargs = {}
    while True:  # a paginated scan, as a seed-era tool would do
        page = t("Rooms").scan(ConsistentRead=True, **kwargs)
        rooms += page["Items"]
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    main = [r for r in rooms if r["roomName"] == f"{call_id}--main"]
    check(main, f"no Rooms item named {call_id}--main")
    seed_attributes("Rooms", main[0], raw_types(client, prefix + "Rooms", {"roomId": {"S": main[0]["roomId"]}}))

    events = t("Events").query(KeyConditionExpression=Key("callId").eq(call_id), ConsistentRead=True)["Items"]
    seqs = [int(e["seq"]) for e in events]
    check(seqs == list(range(1, len(seqs) + 1)), f"event seqs are not 1..n: {seqs}")
    types = [e["type"] for e in events]
    check("transfer.completed" in types, f"no transfer.completed event: {types}")

    print(json.dumps({
        "call": call_id,
        "status": call["status"],
        "transcripts": len(transcripts),
        "transfers": len(of_call),
        "events": len(events),
        "rooms": len(main),
    }))


def put_seed_agent(endpoint, prefix, agent_id, name):
    """Writes an agent exactly as the classic layout's earlier clients did: four attributes, no version."""
    _, db = clients(endpoint)
    db.Table(prefix + "Agents").put_item(Item={
        "agentId": agent_id,
        "name": name,
        "active": True,
        "createdAt": "2024-05-06T07:08:09.123Z",
    })
    print(json.dumps({"agentId": agent_id}))


def check_agent(endpoint, prefix, agent_id, name):
    client, db = clients(endpoint)
    item = db.Table(prefix + "Agents").get_item(Key={"agentId": agent_id}, ConsistentRead=True).get("Item")
    check(item is not None, f"agent {agent_id} is gone")
    seed_attributes("Agents", item, raw_types(client, prefix + "Agents", {"agentId": {"S": agent_id}}))
    check(item["name"] == name, f"name is {item['name']!r}, expected {name!r}")
    check(item["createdAt"].startswith("2024-05-06T07:08:09.123"), f"createdAt changed: {item['createdAt']}")
    print(json.dumps({"agentId": agent_id, "name": item["name"], "version": int(item.get("version", 0))}))


COMMANDS = {
    "check-flow": (check_flow, 6),
    "put-seed-agent": (put_seed_agent, 4),
    "check-agent": (check_agent, 4),
}


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS or len(argv) - 2 != COMMANDS[argv[1]][1]:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    fn, _ = COMMANDS[argv[1]]
    fn(*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
