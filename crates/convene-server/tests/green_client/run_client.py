"""Drives a live Convene with Green API's official Python client (PyPI `whatsapp-api-client-python`).

Every group and account method the client has is called, in its sync and async forms, and each answer is checked
for what the client's callers rely on: HTTP 200 (the client treats anything else as a failure), the keys and their
JSON types. Methods Convene does not implement are called too and must fail cleanly (501, no data).

Usage: run_client.py HOST ID_INSTANCE API_TOKEN_INSTANCE
Exit status 0 when every call answered as expected; the last line of output says so.
"""

import asyncio
import logging
import os
import sys
import tempfile
import threading
import time

from whatsapp_api_client_python import API

HOST, ID_INSTANCE, TOKEN = sys.argv[1:4]
# Numbers the sandbox treats as ordinary WhatsApp users (Russian mobiles, as in Green's own examples).
ALICE, BOB, CAROL = "79001234568@c.us", "79001234569@c.us", "79001234570@c.us"

calls = 0
failures = []


def check(label, response, expect):
    """Records one call: `expect` maps each key to its JSON type, or to an exact value."""
    global calls
    calls += 1
    problems = []
    if response.code != 200:
        problems.append(f"status {response.code}: {response.error}")
    elif not isinstance(response.data, dict):
        problems.append(f"body is not a JSON object: {response.data!r}")
    else:
        for key, want in expect.items():
            if key not in response.data:
                problems.append(f"missing `{key}`")
                continue
            got = response.data[key]
            if isinstance(want, type):
                # JSON booleans are not numbers to the callers.
                if not isinstance(got, want) or (want is int and isinstance(got, bool)):
                    problems.append(f"`{key}` is {type(got).__name__} {got!r}, expected {want.__name__}")
            elif got != want:
                problems.append(f"`{key}` is {got!r}, expected {want!r}")
    report(label, problems, response.data)


def check_refused(label, response, status=501):
    """A method Convene does not implement: the client sees a failure with no data, not a crash."""
    global calls
    calls += 1
    problems = []
    if response.code != status:
        problems.append(f"status {response.code}, expected {status}")
    if response.data is not None:
        problems.append(f"data {response.data!r}, expected none")
    if not response.error or '"code"' not in response.error:
        problems.append(f"error body is not Green's JSON: {response.error!r}")
    report(label, problems, response.error)


def report(label, problems, data):
    if problems:
        failures.append(label)
        print(f"FAIL {label}: {'; '.join(problems)} (data: {data!r})")
    else:
        print(f"ok   {label}")


def check_group_data(label, response, group_id, subject, wid):
    check(
        label,
        response,
        {
            "groupId": group_id,
            "owner": wid,
            "subject": subject,
            "creation": int,
            "participants": list,
            "subjectTime": int,
            "subjectOwner": str,
            "groupInviteLink": str,
        },
    )
    for participant in (response.data or {}).get("participants", []):
        types = {k: type(participant.get(k)).__name__ for k in ("id", "isAdmin", "isSuperAdmin")}
        if types != {"id": "str", "isAdmin": "bool", "isSuperAdmin": "bool"}:
            failures.append(f"{label} participant")
            print(f"FAIL {label}: participant {participant!r} has types {types}")


def picture_file():
    """A small JPEG as far as signatures go."""
    handle, path = tempfile.mkstemp(suffix=".jpg")
    with os.fdopen(handle, "wb") as f:
        f.write(bytes([0xFF, 0xD8, 0xFF, 0xE0]) + bytes(1020))
    return path


def run_sync(green, picture):
    account = green.account
    check("getStateInstance", account.getStateInstance(), {"stateInstance": "authorized"})
    check("getStatusInstance", account.getStatusInstance(), {"statusInstance": "online"})
    settings = account.getSettings()
    check("getSettings", settings, {"wid": str, "webhookUrl": str, "delaySendMessagesMilliseconds": int})
    wid = (settings.data or {}).get("wid", "")
    if not wid.endswith("@c.us"):
        failures.append("getSettings wid")
        print(f"FAIL getSettings: wid {wid!r} is not a chat id")
    check(
        "getWaSettings",
        account.getWaSettings(),
        {"avatar": str, "phone": wid.split("@")[0], "stateInstance": "authorized", "deviceId": str},
    )
    check("qr", account.qr(), {"type": "alreadyLogged", "message": str})

    groups = green.groups
    created = groups.createGroup("Convene Green client", [ALICE, BOB])
    check("createGroup", created, {"created": True, "chatId": str, "groupInviteLink": str})
    group_id = (created.data or {}).get("chatId", "")
    if not group_id.endswith("@g.us") or not created.data["groupInviteLink"].startswith("https://chat.whatsapp.com/"):
        failures.append("createGroup ids")
        print(f"FAIL createGroup: chatId or groupInviteLink malformed: {created.data!r}")

    check_group_data("getGroupData", groups.getGroupData(group_id), group_id, "Convene Green client", wid)
    check("updateGroupName", groups.updateGroupName(group_id, "Renamed by the client"), {"updateGroupName": True})
    check("addGroupParticipant", groups.addGroupParticipant(group_id, CAROL), {"addParticipant": True})
    check("setGroupAdmin", groups.setGroupAdmin(group_id, CAROL), {"setGroupAdmin": True})
    check("removeAdmin", groups.removeAdmin(group_id, CAROL), {"removeAdmin": True})
    check("removeGroupParticipant", groups.removeGroupParticipant(group_id, CAROL), {"removeParticipant": True})
    check(
        "updateGroupSettings",
        groups.updateGroupSettings(
            group_id, allowParticipantsEditGroupSettings=False, allowParticipantsSendMessages=False
        ),
        {"updateGroupSettings": True},
    )
    check(
        "setGroupPicture",
        groups.setGroupPicture(group_id, picture),
        {"setGroupPicture": True, "urlAvatar": str, "reason": str},
    )
    after = groups.getGroupData(group_id)
    check_group_data("getGroupData after changes", after, group_id, "Renamed by the client", wid)
    check(
        "getGroupData settings",
        after,
        {"allowParticipantsEditGroupSettings": False, "allowParticipantsSendMessages": False},
    )
    check("leaveGroup", groups.leaveGroup(group_id), {"leaveGroup": True})
    # Refusals are a 200 with the flag false, as in Green.
    check("leaveGroup again", groups.leaveGroup(group_id), {"leaveGroup": False})
    return wid


async def run_async(green, picture, wid):
    account, groups = green.account, green.groups
    check("getStateInstanceAsync", await account.getStateInstanceAsync(), {"stateInstance": "authorized"})
    check("getSettingsAsync", await account.getSettingsAsync(), {"wid": wid})
    check("getWaSettingsAsync", await account.getWaSettingsAsync(), {"stateInstance": "authorized"})
    check("qrAsync", await account.qrAsync(), {"type": "alreadyLogged"})

    created = await groups.createGroupAsync("Convene Green client async", [ALICE])
    check("createGroupAsync", created, {"created": True, "chatId": str, "groupInviteLink": str})
    group_id = (created.data or {}).get("chatId", "")
    check_group_data(
        "getGroupDataAsync", await groups.getGroupDataAsync(group_id), group_id, "Convene Green client async", wid
    )
    check("updateGroupNameAsync", await groups.updateGroupNameAsync(group_id, "Async"), {"updateGroupName": True})
    check("addGroupParticipantAsync", await groups.addGroupParticipantAsync(group_id, CAROL), {"addParticipant": True})
    check("setGroupAdminAsync", await groups.setGroupAdminAsync(group_id, CAROL), {"setGroupAdmin": True})
    check("removeAdminAsync", await groups.removeAdminAsync(group_id, CAROL), {"removeAdmin": True})
    check(
        "removeGroupParticipantAsync",
        await groups.removeGroupParticipantAsync(group_id, CAROL),
        {"removeParticipant": True},
    )
    check(
        "updateGroupSettingsAsync",
        await groups.updateGroupSettingsAsync(group_id, allowParticipantsSendMessages=False),
        {"updateGroupSettings": True},
    )
    check(
        "setGroupPictureAsync",
        await groups.setGroupPictureAsync(group_id, picture),
        {"setGroupPicture": True, "urlAvatar": str, "reason": str},
    )
    check("leaveGroupAsync", await groups.leaveGroupAsync(group_id), {"leaveGroup": True})


def run_unsupported(green, picture):
    """Account methods Convene does not implement, or not for a sandbox instance: each must fail cleanly."""
    account = green.account
    logger = logging.getLogger("whatsapp-api-client-python")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # the client logs every non-200 as an error
    try:
        check_refused("setSettings", account.setSettings({"webhookUrl": ""}))
        check_refused("reboot", account.reboot())
        # Served for real numbers; a sandbox instance has nothing to unlink or pair: 400 in Green's shape.
        check_refused("logout", account.logout(), status=400)
        check_refused("setProfilePicture", account.setProfilePicture(picture))
        check_refused("getAuthorizationCode", account.getAuthorizationCode(79001234567), status=400)
        check_refused("getStateInstanceHistory", account.getStateInstanceHistory())
        check_refused("updateApiToken", account.updateApiToken())
        wrong = API.GreenAPI(ID_INSTANCE, "0" * 50, host=HOST, media=HOST)
        wrong.logger.setLevel(logging.CRITICAL)
        check_refused("wrong token", wrong.account.getStateInstance(), status=401)
    finally:
        logger.setLevel(level)


def run_notifications(green):
    """Green's notification loop (`startReceivingNotifications`): the events the calls above caused arrive in
    Green's shape, in order, and each is deleted, so the queue ends empty."""
    global calls
    seen = []
    last = [time.monotonic()]

    def handler(type_webhook, body):
        seen.append((type_webhook, body))
        last[0] = time.monotonic()

    def stop_when_quiet():
        # An empty queue makes receiveNotification wait 5 s and answer null: 8 s without a notification is the end.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and time.monotonic() - last[0] < 8:
            time.sleep(0.5)
        green.webhooks.stopReceivingNotifications()

    watchdog = threading.Thread(target=stop_when_quiet)
    watchdog.start()
    green.webhooks.startReceivingNotifications(handler)
    watchdog.join()

    calls += 1
    problems = []
    types = [t for t, _ in seen]
    for expected in ("group.created", "group.updated", "group.participants.added", "group.participants.removed",
                     "group.participants.promoted", "group.participants.demoted", "job.state_changed"):
        if expected not in types:
            problems.append(f"no {expected} notification")
    for type_webhook, body in seen:
        if body.get("instanceData", {}).get("idInstance") != int(ID_INSTANCE) or not isinstance(body.get("timestamp"), int):
            problems.append(f"{type_webhook}: instanceData/timestamp malformed: {body!r}")
            break
    if "group.created" in types and "group.updated" in types and types.index("group.created") > types.index("group.updated"):
        problems.append("group.updated arrived before group.created")
    leftover = green.receiving.receiveNotification()
    if leftover.code != 200 or leftover.data is not None:
        problems.append(f"the queue is not empty after the loop: {leftover.code} {leftover.data!r}")
    report(f"notification loop ({len(seen)} notifications)", problems, types)


def main():
    green = API.GreenAPI(ID_INSTANCE, TOKEN, host=HOST, media=HOST, host_timeout=30, media_timeout=30)
    picture = picture_file()
    try:
        wid = run_sync(green, picture)
        asyncio.run(run_async(green, picture, wid))
        run_unsupported(green, picture)
        run_notifications(green)
    finally:
        os.unlink(picture)
    if failures:
        print(f"green client: {len(failures)} problems in {calls} calls: {', '.join(failures)}")
        sys.exit(1)
    print(f"green client: every call answered as its callers expect ({calls} calls, host {HOST})")


if __name__ == "__main__":
    main()
