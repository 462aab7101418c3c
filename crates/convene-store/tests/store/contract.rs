//! The behaviours every `Store` must have. Each case takes a fresh, empty store.

use convene_core::store::{ApiKeyRecord, GroupListQuery, GroupRecord, InstanceRecord};
use convene_core::{
    ConnectorKind, DbError, Disappearing, GroupId, GroupJid, GroupSettings, InstanceId, PhoneNumber, Store, Timestamp,
};
use uuid::Uuid;

const T0: i64 = 1_795_000_000_000;

fn api_key(name: &str, secret_hash: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        id: Uuid::new_v4(),
        name: name.to_owned(),
        prefix: format!("cv_{name}"),
        secret_hash: secret_hash.to_owned(),
        created_at: Timestamp::from_millis(T0 + 17),
        instance_ids: None,
        read_only: false,
        last_used_at: None,
    }
}

pub fn instance(id: i64, phone: Option<&str>) -> InstanceRecord {
    InstanceRecord {
        id: InstanceId(id),
        kind: if phone.is_some() { ConnectorKind::new("whatsapp") } else { ConnectorKind::new("sandbox") },
        name: format!("instance {id}"),
        phone: phone.map(|p| PhoneNumber::parse(p).unwrap()),
        token_hash: format!("token-hash-{id}"),
        created_at: Timestamp::from_millis(T0 + id % 1000),
    }
}

fn jid(n: u64) -> GroupJid {
    GroupJid::parse(&format!("1203630{n:011}@g.us")).unwrap()
}

/// A group record of `instance_id` with the `jid_n`th JID, made at `created_at`: for the backends' own tests too.
pub(crate) fn group(instance_id: i64, jid_n: u64, created_at: i64) -> GroupRecord {
    GroupRecord {
        id: GroupId::new(),
        instance_id: InstanceId(instance_id),
        jid: jid(jid_n),
        subject: format!("Group {jid_n}"),
        description: None,
        settings: GroupSettings::default(),
        created_at: Timestamp::from_millis(created_at),
        updated_at: Timestamp::from_millis(created_at),
        left_at: None,
        creation_job_id: None,
    }
}

async fn all_pages(store: &dyn Store, instance_id: Option<InstanceId>, limit: u32) -> Vec<Vec<GroupRecord>> {
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page =
            store.list_groups(&GroupListQuery { instance_id, cursor, limit, ..Default::default() }).await.unwrap();
        pages.push(page.groups);
        match page.next_cursor {
            Some(next) => {
                assert!(convene_store::parse_group_cursor(&next), "the store's own cursor {next:?} is accepted");
                cursor = Some(next);
            }
            None => return pages,
        }
        assert!(pages.len() < 100, "pagination does not end");
    }
}

pub async fn api_keys_round_trip_and_are_counted(store: &dyn Store) {
    // Arrange
    let first = api_key("ci", "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8");
    let second = api_key("ops", "a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3");
    assert_eq!(store.count_api_keys().await.unwrap(), 0);

    // Act
    store.insert_api_key(&first).await.unwrap();
    store.insert_api_key(&second).await.unwrap();

    // Assert
    assert_eq!(store.find_api_key(&first.secret_hash).await.unwrap(), Some(first));
    assert_eq!(store.find_api_key(&second.secret_hash).await.unwrap(), Some(second));
    assert_eq!(store.find_api_key("no-such-hash").await.unwrap(), None);
    assert_eq!(store.count_api_keys().await.unwrap(), 2);
}

pub async fn scoped_and_read_only_keys_round_trip_and_are_listed_oldest_first(store: &dyn Store) {
    // Arrange
    let admin = api_key("admin", "hash-admin");
    let scoped = ApiKeyRecord {
        instance_ids: Some(vec![InstanceId(7_103_000_002), InstanceId(7_103_000_001)]),
        created_at: Timestamp::from_millis(T0 + 18),
        ..api_key("scoped", "hash-scoped")
    };
    let reader = ApiKeyRecord {
        read_only: true,
        instance_ids: Some(Vec::new()),
        last_used_at: Some(Timestamp::from_millis(T0 + 99)),
        created_at: Timestamp::from_millis(T0 + 19),
        ..api_key("reader", "hash-reader")
    };

    // Act
    for key in [&reader, &scoped, &admin] {
        store.insert_api_key(key).await.unwrap();
    }

    // Assert
    assert_eq!(store.find_api_key("hash-scoped").await.unwrap().as_ref(), Some(&scoped), "the scope keeps its order");
    assert_eq!(store.find_api_key("hash-reader").await.unwrap().as_ref(), Some(&reader));
    assert_eq!(store.list_api_keys().await.unwrap(), vec![admin, scoped, reader]);
}

pub async fn a_used_key_records_when_and_a_missing_one_is_not_found(store: &dyn Store) {
    // Arrange
    let key = api_key("ci", "hash-ci");
    store.insert_api_key(&key).await.unwrap();

    // Act
    store.touch_api_key(key.id, Timestamp::from_millis(T0 + 60_000)).await.unwrap();

    // Assert
    let found = store.find_api_key("hash-ci").await.unwrap().unwrap();
    assert_eq!(found.last_used_at, Some(Timestamp::from_millis(T0 + 60_000)));
    assert!(matches!(store.touch_api_key(Uuid::new_v4(), Timestamp::from_millis(T0)).await, Err(DbError::NotFound)));
}

pub async fn a_deleted_key_is_gone_but_the_last_admin_key_stays(store: &dyn Store) {
    // Arrange: two admin keys, a scoped one and a read-only one.
    let first = api_key("first", "hash-first");
    let second = api_key("second", "hash-second");
    let scoped = ApiKeyRecord { instance_ids: Some(vec![InstanceId(7_103_000_001)]), ..api_key("scoped", "hash-s") };
    let reader = ApiKeyRecord { read_only: true, ..api_key("reader", "hash-r") };
    for key in [&first, &second, &scoped, &reader] {
        store.insert_api_key(key).await.unwrap();
    }

    // Act + Assert: non-admin keys and all but one admin key go.
    store.delete_api_key(scoped.id).await.unwrap();
    store.delete_api_key(reader.id).await.unwrap();
    store.delete_api_key(first.id).await.unwrap();
    assert_eq!(store.find_api_key("hash-first").await.unwrap(), None);
    assert!(matches!(store.delete_api_key(second.id).await, Err(DbError::Conflict)), "the last admin key stays");
    assert!(matches!(store.delete_api_key(first.id).await, Err(DbError::NotFound)));
    assert_eq!(store.list_api_keys().await.unwrap(), vec![second]);
}

pub async fn a_console_session_finds_its_key_until_it_expires_is_ended_or_its_key_goes(store: &dyn Store) {
    // Arrange: two keys, a session for each, and one session that expired already.
    use convene_core::store::ConsoleSessionRecord;
    let admin = api_key("admin", "hash-admin");
    let reader = ApiKeyRecord { read_only: true, ..api_key("reader", "hash-reader") };
    store.insert_api_key(&admin).await.unwrap();
    store.insert_api_key(&reader).await.unwrap();
    let session = |hash: &str, key: &ApiKeyRecord, created: i64, expires: i64| ConsoleSessionRecord {
        secret_hash: hash.to_owned(),
        api_key_id: key.id,
        created_at: Timestamp::from_millis(T0 + created),
        expires_at: Timestamp::from_millis(T0 + expires),
    };
    store.insert_console_session(&session("old", &admin, 0, 1_000)).await.unwrap();
    store.insert_console_session(&session("s-admin", &admin, 2_000, 60_000)).await.unwrap();
    store.insert_console_session(&session("s-reader", &reader, 2_000, 60_000)).await.unwrap();
    let at = |ms: i64| Timestamp::from_millis(T0 + ms);

    // Act + Assert: each session finds its own key while it lasts, and no other secret finds one.
    assert_eq!(store.find_console_session("s-admin", at(3_000)).await.unwrap(), Some(admin.clone()));
    assert_eq!(store.find_console_session("s-reader", at(3_000)).await.unwrap(), Some(reader.clone()));
    assert_eq!(store.find_console_session("old", at(3_000)).await.unwrap(), None, "expired");
    assert_eq!(store.find_console_session("s-admin", at(60_000)).await.unwrap(), None, "expired at its end");
    assert_eq!(store.find_console_session("nope", at(3_000)).await.unwrap(), None);

    // Signing out ends the session (twice is fine); revoking the key ends its sessions.
    store.delete_console_session("s-admin").await.unwrap();
    store.delete_console_session("s-admin").await.unwrap();
    assert_eq!(store.find_console_session("s-admin", at(3_000)).await.unwrap(), None);
    store.delete_api_key(reader.id).await.unwrap();
    assert_eq!(store.find_console_session("s-reader", at(3_000)).await.unwrap(), None);

    // A sign-in after a session expired forgets it: its secret cannot come back even with an earlier clock.
    store.insert_console_session(&session("new", &admin, 5_000, 60_000)).await.unwrap();
    assert_eq!(store.find_console_session("old", at(500)).await.unwrap(), None, "expired sessions are deleted");
    assert_eq!(store.find_console_session("new", at(5_001)).await.unwrap(), Some(admin));
}

pub async fn a_new_instance_token_replaces_the_old_hash(store: &dyn Store) {
    // Arrange
    let mut record = instance(7_103_000_001, None);
    store.insert_instance(&record).await.unwrap();

    // Act
    store.set_instance_token_hash(record.id, "new-token-hash").await.unwrap();

    // Assert
    record.token_hash = "new-token-hash".to_owned();
    assert_eq!(store.get_instance(record.id).await.unwrap(), record);
    assert!(matches!(store.set_instance_token_hash(InstanceId(7_103_999_999), "x").await, Err(DbError::NotFound)));
}

pub async fn instances_round_trip_with_and_without_a_phone(store: &dyn Store) {
    // Arrange
    let with_phone = instance(7_103_000_002, Some("+1 713 715 7533"));
    let without_phone = instance(7_103_000_001, None);

    // Act
    store.insert_instance(&with_phone).await.unwrap();
    store.insert_instance(&without_phone).await.unwrap();

    // Assert
    assert_eq!(store.get_instance(with_phone.id).await.unwrap(), with_phone);
    assert_eq!(store.get_instance(without_phone.id).await.unwrap(), without_phone);
    assert_eq!(store.list_instances().await.unwrap(), vec![without_phone, with_phone], "in creation order");
}

pub async fn a_paired_instance_gets_its_phone_and_others_keep_theirs(store: &dyn Store) {
    // Arrange
    let paired = instance(7_103_000_001, None);
    let other = instance(7_103_000_002, Some("+1 713 715 7533"));
    store.insert_instance(&paired).await.unwrap();
    store.insert_instance(&other).await.unwrap();
    let number = PhoneNumber::parse("+1 201 555 0101").unwrap();

    // Act
    store.set_instance_phone(paired.id, &number).await.unwrap();

    // Assert
    assert_eq!(store.get_instance(paired.id).await.unwrap().phone, Some(number.clone()));
    assert_eq!(store.get_instance(other.id).await.unwrap(), other);
    assert!(matches!(store.set_instance_phone(InstanceId(7_103_000_009), &number).await, Err(DbError::NotFound)));
}

pub async fn groups_round_trip_with_every_field_set_and_unset(store: &dyn Store) {
    // Arrange: each flag set alone, every timer, and everything set at once, so swapped columns cannot pass.
    store.insert_instance(&instance(7_103_000_001, None)).await.unwrap();
    let timers = [Disappearing::Off, Disappearing::Day, Disappearing::Week, Disappearing::NinetyDays];
    let mut groups: Vec<GroupRecord> = (0..4)
        .map(|i| GroupRecord {
            settings: GroupSettings {
                announce_only: i == 1,
                locked_info: i == 2,
                join_approval: i == 3,
                disappearing_messages: timers[i],
            },
            ..group(7_103_000_001, i as u64, T0 + i as i64)
        })
        .collect();
    groups.push(GroupRecord {
        description: Some("Line one\nLine two — ünïcode".to_owned()),
        settings: GroupSettings {
            announce_only: true,
            locked_info: true,
            join_approval: true,
            disappearing_messages: Disappearing::Week,
        },
        updated_at: Timestamp::from_millis(T0 + 5_000),
        left_at: Some(Timestamp::from_millis(T0 + 9_000)),
        creation_job_id: Some(Uuid::now_v7()),
        ..group(7_103_000_001, 99, T0 + 10)
    });
    groups.push(GroupRecord { description: Some(String::new()), ..group(7_103_000_001, 98, T0 + 11) });

    // Act
    for g in &groups {
        store.insert_group(g).await.unwrap();
    }

    // Assert
    for g in &groups {
        assert_eq!(&store.get_group(g.id).await.unwrap(), g);
    }
}

pub async fn a_duplicate_instance_id_is_a_conflict(store: &dyn Store) {
    // Arrange
    let first = instance(7_103_000_001, None);
    store.insert_instance(&first).await.unwrap();
    let again = InstanceRecord { name: "another".into(), ..instance(7_103_000_001, Some("+447700176576")) };

    // Act
    let result = store.insert_instance(&again).await;

    // Assert
    assert!(matches!(result, Err(DbError::Conflict)), "{result:?}");
    assert_eq!(store.get_instance(first.id).await.unwrap(), first, "the first record is untouched");
}

pub async fn a_duplicate_api_key_hash_is_a_conflict(store: &dyn Store) {
    // Arrange
    store.insert_api_key(&api_key("one", "same-hash")).await.unwrap();

    // Act
    let result = store.insert_api_key(&api_key("two", "same-hash")).await;

    // Assert
    assert!(matches!(result, Err(DbError::Conflict)), "{result:?}");
    assert_eq!(store.count_api_keys().await.unwrap(), 1);
}

pub async fn a_second_record_for_one_instance_and_jid_is_a_conflict(store: &dyn Store) {
    // Arrange
    store.insert_instance(&instance(7_103_000_001, None)).await.unwrap();
    store.insert_instance(&instance(7_103_000_002, None)).await.unwrap();
    store.insert_group(&group(7_103_000_001, 1, T0)).await.unwrap();

    // Act
    let same_instance = store.insert_group(&group(7_103_000_001, 1, T0 + 1)).await;
    let other_instance = store.insert_group(&group(7_103_000_002, 1, T0 + 2)).await;

    // Assert
    assert!(matches!(same_instance, Err(DbError::Conflict)), "{same_instance:?}");
    assert!(other_instance.is_ok(), "another instance may know the same group: {other_instance:?}");
}

pub async fn a_duplicate_group_id_is_a_conflict(store: &dyn Store) {
    // Arrange
    store.insert_instance(&instance(7_103_000_001, None)).await.unwrap();
    let first = group(7_103_000_001, 1, T0);
    store.insert_group(&first).await.unwrap();

    // Act
    let result = store.insert_group(&GroupRecord { id: first.id, ..group(7_103_000_001, 2, T0) }).await;

    // Assert
    assert!(matches!(result, Err(DbError::Conflict)), "{result:?}");
}

pub async fn missing_records_are_not_found(store: &dyn Store) {
    // Arrange
    let missing_instance = InstanceId(7_103_999_999);
    let missing_group = group(7_103_000_001, 1, T0);

    // Act
    let get_instance = store.get_instance(missing_instance).await;
    let delete_instance = store.delete_instance(missing_instance).await;
    let get_group = store.get_group(missing_group.id).await;
    let update_group = store.update_group(&missing_group).await;

    // Assert
    assert!(matches!(get_instance, Err(DbError::NotFound)), "{get_instance:?}");
    assert!(matches!(delete_instance, Err(DbError::NotFound)), "{delete_instance:?}");
    assert!(matches!(get_group, Err(DbError::NotFound)), "{get_group:?}");
    assert!(matches!(update_group, Err(DbError::NotFound)), "{update_group:?}");
}

pub async fn deleting_an_instance_deletes_its_groups_and_nothing_else(store: &dyn Store) {
    // Arrange
    store.insert_instance(&instance(7_103_000_001, None)).await.unwrap();
    let kept = instance(7_103_000_002, None);
    store.insert_instance(&kept).await.unwrap();
    let doomed = [group(7_103_000_001, 1, T0), group(7_103_000_001, 2, T0 + 1)];
    let survivor = group(7_103_000_002, 1, T0 + 2);
    for g in doomed.iter().chain([&survivor]) {
        store.insert_group(g).await.unwrap();
    }

    // Act
    store.delete_instance(InstanceId(7_103_000_001)).await.unwrap();

    // Assert
    assert!(matches!(store.get_instance(InstanceId(7_103_000_001)).await, Err(DbError::NotFound)));
    for g in &doomed {
        assert!(matches!(store.get_group(g.id).await, Err(DbError::NotFound)), "group {} survived", g.id);
    }
    assert!(store.find_groups_by_jid(&jid(1), None).await.unwrap() == vec![survivor.clone()]);
    assert_eq!(store.list_instances().await.unwrap(), vec![kept]);
    assert_eq!(store.get_group(survivor.id).await.unwrap(), survivor);
}

pub async fn updating_a_group_replaces_only_its_mutable_fields(store: &dyn Store) {
    // Arrange
    store.insert_instance(&instance(7_103_000_001, None)).await.unwrap();
    let original = GroupRecord { description: Some("old".into()), ..group(7_103_000_001, 1, T0) };
    store.insert_group(&original).await.unwrap();
    let changed = GroupRecord {
        subject: "Renamed".into(),
        description: None,
        settings: GroupSettings {
            announce_only: true,
            locked_info: false,
            join_approval: true,
            disappearing_messages: Disappearing::Day,
        },
        updated_at: Timestamp::from_millis(T0 + 60_000),
        left_at: Some(Timestamp::from_millis(T0 + 120_000)),
        ..original.clone()
    };
    // Fields outside the update's reach, changed too: they must be ignored.
    let attempt = GroupRecord { created_at: Timestamp::from_millis(T0 - 1), jid: jid(2), ..changed.clone() };

    // Act
    store.update_group(&attempt).await.unwrap();

    // Assert
    assert_eq!(store.get_group(original.id).await.unwrap(), changed);
}

pub async fn groups_are_found_by_jid_on_every_instance_or_on_one(store: &dyn Store) {
    // Arrange
    store.insert_instance(&instance(7_103_000_001, None)).await.unwrap();
    store.insert_instance(&instance(7_103_000_002, None)).await.unwrap();
    let on_second = group(7_103_000_002, 1, T0);
    let on_first = group(7_103_000_001, 1, T0 + 5);
    let unrelated = group(7_103_000_001, 2, T0 + 1);
    for g in [&on_first, &on_second, &unrelated] {
        store.insert_group(g).await.unwrap();
    }

    // Act
    let everywhere = store.find_groups_by_jid(&jid(1), None).await.unwrap();
    let first_only = store.find_groups_by_jid(&jid(1), Some(InstanceId(7_103_000_001))).await.unwrap();
    let unknown = store.find_groups_by_jid(&jid(3), None).await.unwrap();

    // Assert
    assert_eq!(everywhere, vec![on_second, on_first.clone()], "in creation order");
    assert_eq!(first_only, vec![on_first]);
    assert!(unknown.is_empty());
}

pub async fn seven_groups_in_pages_of_three_come_as_three_three_and_one(store: &dyn Store) {
    // Arrange: some groups share a creation time, so the id must break ties.
    store.insert_instance(&instance(7_103_000_001, None)).await.unwrap();
    let times = [T0 + 3, T0, T0 + 1, T0 + 1, T0 + 1, T0 + 2, T0 + 1];
    let mut groups: Vec<GroupRecord> =
        times.iter().enumerate().map(|(i, &t)| group(7_103_000_001, i as u64, t)).collect();
    for g in &groups {
        store.insert_group(g).await.unwrap();
    }
    groups.sort_by_key(|g| (g.created_at, g.id.0.hyphenated().to_string()));

    // Act
    let pages = all_pages(store, None, 3).await;

    // Assert
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(pages.concat(), groups, "every group once, in (created_at, id) order");
}

pub async fn a_last_page_that_is_exactly_full_has_no_next_cursor(store: &dyn Store) {
    // Arrange
    store.insert_instance(&instance(7_103_000_001, None)).await.unwrap();
    for i in 0..6 {
        store.insert_group(&group(7_103_000_001, i, T0 + i as i64)).await.unwrap();
    }

    // Act
    let pages = all_pages(store, None, 3).await;

    // Assert
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3]);
}

pub async fn listing_by_instance_pages_through_that_instances_groups_only(store: &dyn Store) {
    // Arrange: two instances' groups interleaved in time.
    store.insert_instance(&instance(7_103_000_001, None)).await.unwrap();
    store.insert_instance(&instance(7_103_000_002, None)).await.unwrap();
    let mut mine = Vec::new();
    for i in 0..10 {
        let owner = if i % 2 == 0 { 7_103_000_001 } else { 7_103_000_002 };
        let g = group(owner, i, T0 + i as i64);
        store.insert_group(&g).await.unwrap();
        if owner == 7_103_000_001 {
            mine.push(g);
        }
    }

    // Act
    let pages = all_pages(store, Some(InstanceId(7_103_000_001)), 2).await;

    // Assert
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(pages.concat(), mine);
}

pub async fn a_subject_search_ignores_ascii_case_reads_wildcards_as_text_and_pages(store: &dyn Store) {
    // Arrange: subjects that a LIKE wildcard left unescaped, or a case-sensitive match, would get wrong.
    store.insert_instance(&instance(7_103_000_001, None)).await.unwrap();
    store.insert_instance(&instance(7_103_000_002, None)).await.unwrap();
    let subjects = [
        "INCIDENT-1 | War room",
        "Onboarding: ACME",
        "incident-2 | war room",
        "100% uptime_club",
        "100 percent uptime club",
        "Incident-3 | War Room",
    ];
    let mut groups = Vec::new();
    for (i, subject) in subjects.iter().enumerate() {
        let owner = if i == 5 { 7_103_000_002 } else { 7_103_000_001 };
        let g = GroupRecord { subject: (*subject).to_owned(), ..group(owner, i as u64, T0 + i as i64) };
        store.insert_group(&g).await.unwrap();
        groups.push(g);
    }
    let search = |text: &str, instance_id: Option<InstanceId>, cursor: Option<String>| GroupListQuery {
        instance_id,
        subject_contains: Some(text.to_owned()),
        cursor,
        limit: 2,
    };

    // Act
    let first = store.list_groups(&search("WAR ROOM", None, None)).await.unwrap();
    let second = store.list_groups(&search("WAR ROOM", None, first.next_cursor.clone())).await.unwrap();
    let percent = store.list_groups(&search("0% up", None, None)).await.unwrap();
    let underscore = store.list_groups(&search("uptime_", None, None)).await.unwrap();
    let one_instance = store.list_groups(&search("war", Some(InstanceId(7_103_000_002)), None)).await.unwrap();

    // Assert
    assert_eq!(first.groups, [groups[0].clone(), groups[2].clone()]);
    assert_eq!(second.groups, [groups[5].clone()]);
    assert_eq!(second.next_cursor, None);
    assert_eq!(percent.groups, [groups[3].clone()], "`%` is a character, not any text");
    assert_eq!(underscore.groups, [groups[3].clone()], "`_` is a character, not any one");
    assert_eq!(one_instance.groups, [groups[5].clone()]);
}

pub async fn listing_with_no_groups_gives_one_empty_page(store: &dyn Store) {
    // Act
    let page = store.list_groups(&GroupListQuery { limit: 10, ..Default::default() }).await.unwrap();

    // Assert
    assert!(page.groups.is_empty());
    assert_eq!(page.next_cursor, None);
}

pub async fn a_zero_limit_is_read_as_one(store: &dyn Store) {
    // Arrange
    store.insert_instance(&instance(7_103_000_001, None)).await.unwrap();
    for i in 0..2 {
        store.insert_group(&group(7_103_000_001, i, T0 + i as i64)).await.unwrap();
    }

    // Act
    let pages = all_pages(store, None, 0).await;

    // Assert
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1]);
}

pub async fn a_malformed_cursor_is_refused(store: &dyn Store) {
    // Arrange
    let query = GroupListQuery { cursor: Some("page-2".into()), limit: 10, ..Default::default() };

    // Act
    let result = store.list_groups(&query).await;

    // Assert
    match result {
        Err(DbError::Other(e)) => assert_eq!(e.to_string(), "invalid cursor"),
        other => panic!("expected an invalid-cursor error, got {other:?}"),
    }
    assert!(!convene_store::parse_group_cursor("page-2"));
}

// ---------- idempotency keys ----------

use convene_core::store::{IdempotencyClaim, IdempotencyRecord, IdempotentResponse};

/// An API key in the store, for idempotency records to belong to.
async fn stored_api_key(store: &dyn Store, name: &str) -> Uuid {
    let key = api_key(name, &format!("hash-of-{name}"));
    store.insert_api_key(&key).await.unwrap();
    key.id
}

fn idempotent(api_key_id: Uuid, key: &str, fingerprint: &str, created_at: i64) -> IdempotencyRecord {
    IdempotencyRecord {
        api_key_id,
        key: key.to_owned(),
        fingerprint: fingerprint.to_owned(),
        created_at: Timestamp::from_millis(created_at),
        response: None,
    }
}

fn created(body: &str) -> IdempotentResponse {
    IdempotentResponse { status: 201, content_type: Some("application/json".into()), body: body.to_owned() }
}

/// `begin_idempotent_request` with nothing abandoned or expired.
async fn begin(store: &dyn Store, record: &IdempotencyRecord) -> IdempotencyClaim {
    let long_ago = Timestamp::from_millis(0);
    store.begin_idempotent_request(record, long_ago, long_ago).await.unwrap()
}

pub async fn an_idempotency_key_is_claimed_once_and_then_answers_with_its_record(store: &dyn Store) {
    // Arrange
    let owner = stored_api_key(store, "ci").await;
    let first = idempotent(owner, "order-1", "POST /v1/groups sha256=aa", T0);
    let answer = created("{\"group\":{\"id\":\"ünïcode\"}}\n");

    // Act
    let claimed = begin(store, &first).await;
    let while_running = begin(store, &idempotent(owner, "order-1", "POST /v1/groups sha256=aa", T0 + 5)).await;
    store.complete_idempotent_request(&first, &answer).await.unwrap();
    let after = begin(store, &idempotent(owner, "order-1", "POST /v1/groups sha256=bb", T0 + 9)).await;

    // Assert
    assert_eq!(claimed, IdempotencyClaim::Claimed);
    assert_eq!(while_running, IdempotencyClaim::Existing(first.clone()), "in progress: no response yet");
    let done = IdempotencyRecord { response: Some(answer), ..first.clone() };
    assert_eq!(after, IdempotencyClaim::Existing(done), "the first request's fingerprint and answer, untouched");
    let again = store.complete_idempotent_request(&first, &created("{}")).await;
    assert!(matches!(again, Err(DbError::NotFound)), "a complete record is not completed twice: {again:?}");
}

pub async fn an_idempotent_answer_without_a_content_type_or_body_round_trips(store: &dyn Store) {
    // Arrange
    let owner = stored_api_key(store, "ci").await;
    let record = idempotent(owner, "k", "DELETE /v1/x sha256=e3", T0);
    let empty = IdempotentResponse { status: 204, content_type: None, body: String::new() };
    begin(store, &record).await;

    // Act
    store.complete_idempotent_request(&record, &empty).await.unwrap();

    // Assert
    let expected = IdempotencyRecord { response: Some(empty), ..record.clone() };
    assert_eq!(begin(store, &record).await, IdempotencyClaim::Existing(expected));
}

pub async fn idempotency_keys_are_scoped_to_their_api_key(store: &dyn Store) {
    // Arrange
    let ci = stored_api_key(store, "ci").await;
    let ops = stored_api_key(store, "ops").await;

    // Act
    let for_ci = begin(store, &idempotent(ci, "same", "f1", T0)).await;
    let for_ops = begin(store, &idempotent(ops, "same", "f2", T0)).await;

    // Assert
    assert_eq!((for_ci, for_ops), (IdempotencyClaim::Claimed, IdempotencyClaim::Claimed));
}

pub async fn an_abandoned_idempotency_claim_is_taken_over_and_the_old_claim_can_no_longer_finish(store: &dyn Store) {
    // Arrange: a request started at T0 and never finished.
    let owner = stored_api_key(store, "ci").await;
    let stuck = idempotent(owner, "k", "f1", T0);
    begin(store, &stuck).await;
    let retry = idempotent(owner, "k", "f2", T0 + 300_000);
    let never = Timestamp::from_millis(0);

    // Act
    let too_soon = store.begin_idempotent_request(&retry, Timestamp::from_millis(T0), never).await.unwrap();
    let taken = store.begin_idempotent_request(&retry, Timestamp::from_millis(T0 + 1), never).await.unwrap();
    let late_completion = store.complete_idempotent_request(&stuck, &created("{}")).await;
    let late_release = store.release_idempotent_request(&stuck).await;

    // Assert
    assert_eq!(too_soon, IdempotencyClaim::Existing(stuck.clone()), "created at T0 is not before T0");
    assert_eq!(taken, IdempotencyClaim::Claimed);
    assert!(matches!(late_completion, Err(DbError::NotFound)), "{late_completion:?}");
    assert!(matches!(late_release, Err(DbError::NotFound)), "{late_release:?}");
    assert_eq!(begin(store, &stuck).await, IdempotencyClaim::Existing(retry), "the record is the new claim's");
}

pub async fn a_complete_idempotency_record_is_replaced_only_once_expired(store: &dyn Store) {
    // Arrange
    let owner = stored_api_key(store, "ci").await;
    let first = idempotent(owner, "k", "f1", T0);
    begin(store, &first).await;
    store.complete_idempotent_request(&first, &created("{\"n\":1}")).await.unwrap();
    let later = idempotent(owner, "k", "f2", T0 + 86_400_000);

    // Act: "abandoned" is only for records in progress; "expired" is for every record.
    let not_abandoned =
        store.begin_idempotent_request(&later, Timestamp::from_millis(T0 + 1), Timestamp::from_millis(0));
    let not_abandoned = not_abandoned.await.unwrap();
    let expired = store.begin_idempotent_request(&later, Timestamp::from_millis(0), Timestamp::from_millis(T0 + 1));
    let expired = expired.await.unwrap();

    // Assert
    assert!(matches!(&not_abandoned, IdempotencyClaim::Existing(r) if r.response.is_some()), "{not_abandoned:?}");
    assert_eq!(expired, IdempotencyClaim::Claimed);
    assert_eq!(begin(store, &first).await, IdempotencyClaim::Existing(later), "in progress again, with no answer");
}

pub async fn a_released_idempotency_key_can_be_claimed_again(store: &dyn Store) {
    // Arrange
    let owner = stored_api_key(store, "ci").await;
    let failed = idempotent(owner, "k", "f1", T0);
    begin(store, &failed).await;

    // Act
    store.release_idempotent_request(&failed).await.unwrap();
    let released_twice = store.release_idempotent_request(&failed).await;
    let retry = idempotent(owner, "k", "f1", T0 + 10);
    let claimed = begin(store, &retry).await;
    store.complete_idempotent_request(&retry, &created("{}")).await.unwrap();
    let release_complete = store.release_idempotent_request(&retry).await;

    // Assert
    assert!(matches!(released_twice, Err(DbError::NotFound)), "{released_twice:?}");
    assert_eq!(claimed, IdempotencyClaim::Claimed);
    assert!(matches!(release_complete, Err(DbError::NotFound)), "a complete record stays: {release_complete:?}");
    assert!(matches!(begin(store, &retry).await, IdempotencyClaim::Existing(r) if r.response.is_some()));
}

pub async fn concurrent_claims_of_one_idempotency_key_have_exactly_one_winner(store: &dyn Store) {
    // Arrange
    let owner = stored_api_key(store, "ci").await;
    let records: Vec<_> = (0..4).map(|i| idempotent(owner, "k", "f", T0 + i)).collect();

    // Act
    let (a, b, c, d) = tokio::join!(
        begin(store, &records[0]),
        begin(store, &records[1]),
        begin(store, &records[2]),
        begin(store, &records[3]),
    );

    // Assert
    let winners = [a, b, c, d].iter().filter(|c| **c == IdempotencyClaim::Claimed).count();
    assert_eq!(winners, 1);
}

pub async fn expired_idempotency_records_are_deleted_oldest_first_a_batch_at_a_time(store: &dyn Store) {
    // Arrange: records created at T0 … T0+4; those before T0+3 are expired.
    let owner = stored_api_key(store, "ci").await;
    let records: Vec<_> = (0..5).map(|i| idempotent(owner, &format!("k{i}"), "f", T0 + i)).collect();
    for r in &records {
        begin(store, r).await;
    }
    let before = Timestamp::from_millis(T0 + 3);

    // Act
    let first_batch = store.delete_expired_idempotency_keys(before, 2).await.unwrap();
    let k0_again = IdempotencyRecord { created_at: Timestamp::from_millis(T0 + 2), ..records[0].clone() };
    let k0_again = begin(store, &k0_again).await;
    let second_batch = store.delete_expired_idempotency_keys(before, 2).await.unwrap();
    let third_batch = store.delete_expired_idempotency_keys(before, 2).await.unwrap();

    // Assert
    assert_eq!((first_batch, second_batch, third_batch), (2, 2, 0), "k0 and k1, then k2 and the re-claimed k0");
    for live in &records[3..] {
        assert_eq!(begin(store, live).await, IdempotencyClaim::Existing(live.clone()), "{} stays", live.key);
    }
    assert_eq!(k0_again, IdempotencyClaim::Claimed, "k0 was gone");
}

pub async fn instance_numbers_are_found_taken_and_the_highest_in_a_range(store: &dyn Store) {
    // Arrange
    for (id, phone) in
        [(7_103_000_001, "+12015550100"), (7_103_000_002, "+12015560042"), (7_103_000_003, "+447700176576")]
    {
        store.insert_instance(&instance(id, Some(phone))).await.unwrap();
    }
    let number = |p: &str| PhoneNumber::parse(p).unwrap();

    // Act + Assert
    assert!(store.instance_phone_taken(&number("+12015560042")).await.unwrap());
    assert!(!store.instance_phone_taken(&number("+12015560043")).await.unwrap());
    let (first, end_555, last) = (number("+12015550100"), number("+12015559999"), number("+12016549999"));
    assert_eq!(store.highest_instance_phone(&first, &last).await.unwrap(), Some(number("+12015560042")));
    assert_eq!(store.highest_instance_phone(&first, &end_555).await.unwrap(), Some(first.clone()));
    let elsewhere = store.highest_instance_phone(&number("+12025550100"), &number("+12026549999")).await;
    assert_eq!(elsewhere.unwrap(), None);
}

/// Every contract case, handed to a backend's runner macro: one list, so no backend can miss a case.
macro_rules! every_case {
    ($run:ident) => {
        $run!(
            api_keys_round_trip_and_are_counted,
            scoped_and_read_only_keys_round_trip_and_are_listed_oldest_first,
            a_used_key_records_when_and_a_missing_one_is_not_found,
            a_deleted_key_is_gone_but_the_last_admin_key_stays,
            a_console_session_finds_its_key_until_it_expires_is_ended_or_its_key_goes,
            a_new_instance_token_replaces_the_old_hash,
            instances_round_trip_with_and_without_a_phone,
            a_paired_instance_gets_its_phone_and_others_keep_theirs,
            instance_numbers_are_found_taken_and_the_highest_in_a_range,
            groups_round_trip_with_every_field_set_and_unset,
            a_duplicate_instance_id_is_a_conflict,
            a_duplicate_api_key_hash_is_a_conflict,
            a_second_record_for_one_instance_and_jid_is_a_conflict,
            a_duplicate_group_id_is_a_conflict,
            missing_records_are_not_found,
            deleting_an_instance_deletes_its_groups_and_nothing_else,
            updating_a_group_replaces_only_its_mutable_fields,
            groups_are_found_by_jid_on_every_instance_or_on_one,
            seven_groups_in_pages_of_three_come_as_three_three_and_one,
            a_last_page_that_is_exactly_full_has_no_next_cursor,
            listing_by_instance_pages_through_that_instances_groups_only,
            a_subject_search_ignores_ascii_case_reads_wildcards_as_text_and_pages,
            listing_with_no_groups_gives_one_empty_page,
            a_zero_limit_is_read_as_one,
            a_malformed_cursor_is_refused,
            // idempotency keys
            an_idempotency_key_is_claimed_once_and_then_answers_with_its_record,
            an_idempotent_answer_without_a_content_type_or_body_round_trips,
            idempotency_keys_are_scoped_to_their_api_key,
            an_abandoned_idempotency_claim_is_taken_over_and_the_old_claim_can_no_longer_finish,
            a_complete_idempotency_record_is_replaced_only_once_expired,
            a_released_idempotency_key_can_be_claimed_again,
            concurrent_claims_of_one_idempotency_key_have_exactly_one_winner,
            expired_idempotency_records_are_deleted_oldest_first_a_batch_at_a_time,
            a_reader_following_the_log_misses_no_event_written_by_concurrent_commits,
            a_queued_jobs_update_as_read_is_refused_once_another_worker_claimed_or_changed_it,
            // leases on numbers
            a_free_number_is_taken_and_held_against_other_nodes_until_it_expires,
            a_held_lease_is_renewed_until_it_expires_and_not_after,
            a_released_lease_is_taken_at_once_and_a_stale_release_changes_nothing,
            every_lease_taken_is_in_the_numbers_history_in_order,
            of_nodes_racing_for_one_free_number_exactly_one_wins,
            free_numbers_are_taken_in_a_batch_up_to_a_limit_and_racing_nodes_each_get_their_own,
            a_node_renews_what_it_holds_in_one_go_and_finds_what_it_lost,
            a_node_finds_the_jobs_of_its_numbers_behind_any_number_of_other_nodes_jobs,
            nodes_alive_are_those_seen_lately_and_a_node_that_leaves_frees_its_numbers_at_once,
            a_deleted_numbers_lease_goes_with_it_and_its_history_stays,
            // pacing and the creation queue
            instance_settings_and_pauses_round_trip_without_clobbering_each_other,
            creation_attempts_are_recorded_finished_and_counted_since_a_time,
            a_batch_of_jobs_is_inserted_whole_or_not_at_all,
            due_jobs_come_soonest_first_and_are_claimed_once,
            deleting_an_instance_deletes_its_settings_and_attempts,
            instance_settings_of_every_shape_round_trip_per_instance,
            a_pause_set_before_any_settings_leaves_the_defaults_and_is_replaced_whole,
            creation_attempts_come_back_whole_and_oldest_first_from_the_since_boundary_on,
            jobs_round_trip_with_every_field_set_and_unset,
            a_batch_with_a_taken_id_or_creation_key_inserts_nothing,
            jobs_are_listed_newest_first_by_state_and_batch,
            due_jobs_are_the_queued_ones_up_to_now_soonest_then_oldest_then_by_id,
            the_next_job_due_counts_queued_jobs_only,
            jobs_are_counted_by_state,
            batches_are_listed_newest_first_with_their_jobs_counted_by_state_a_page_at_a_time,
            claiming_a_job_pins_it_counts_an_attempt_and_leaves_the_rest,
            updating_a_job_replaces_only_its_mutable_fields,
            deleting_an_instance_keeps_its_jobs_and_the_other_instances_records,
            an_attempt_that_was_not_sent_uses_no_pacing_budget,
            a_duplicate_is_the_newest_live_or_succeeded_job_with_the_key_inside_the_window,
            a_duplicate_is_found_in_any_minute_of_a_long_window,
            a_keyed_job_goes_in_only_when_no_duplicate_did_and_nothing_of_the_commit_is_written_otherwise,
            // events and webhook deliveries
            a_commit_writes_the_change_and_its_events_or_neither,
            events_fan_out_to_enabled_endpoints_whose_filter_takes_them,
            only_the_oldest_pending_delivery_of_each_key_is_due,
            claimed_deliveries_go_to_one_pass_and_are_due_again_only_when_the_claim_ends,
            many_passes_claiming_at_once_all_succeed_and_claim_each_delivery_once,
            a_pass_that_overran_its_claim_records_nothing_over_the_pass_that_took_it_over,
            an_attempt_is_logged_and_can_disable_its_endpoint,
            failed_deliveries_replay_one_or_all_since_a_time,
            the_notification_queue_gives_the_oldest_unacknowledged_event_of_an_instance,
            events_list_newest_first_by_type_and_instance_a_page_before_a_seq,
            endpoints_update_and_delete_with_their_deliveries_but_not_the_events,
            old_events_go_with_their_deliveries_and_attempts_unless_still_owed,
        );
    };
}
pub(crate) use every_case;

pub use crate::contract_events::*;
pub use crate::contract_jobs::*;
pub use crate::contract_leases::*;

/// Migration 9 links groups made before it to the jobs whose results name them. The statements that set up a
/// database as an older build left it: two finished jobs (one for each of two groups) and a group no job made.
pub fn groups_from_before_the_job_link(instance_id: i64) -> (Vec<GroupRecord>, Vec<Uuid>, String) {
    let groups: Vec<GroupRecord> = (0..3).map(|i| group(instance_id, i, T0 + i as i64)).collect();
    let jobs: Vec<Uuid> = (0..2).map(|_| Uuid::now_v7()).collect();
    let mut sql = String::from("UPDATE groups SET creation_job_id = NULL;\n");
    for (job, g) in jobs.iter().zip(&groups) {
        sql.push_str(&format!(
            "INSERT INTO jobs (id, state, instance_ids, request, creation_key, attempts, next_run_at, needs_reconcile, \
             result, created_at, updated_at) VALUES ('{job}', 'succeeded', '{instance_id}', '{{}}', 'key-{job}', 1, 0, \
             FALSE, '{{\"group_id\":\"{}\",\"instance_id\":{instance_id},\"jid\":\"{}\",\"participants\":[],\
             \"backup_admins\":[]}}', 0, 0);\n",
            g.id.0,
            g.jid.as_str()
        ));
    }
    (groups, jobs, sql)
}
