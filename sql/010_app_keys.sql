-- 010_app_keys.sql: the keys of TP-managed Baidu apps, learned from
-- getbindservice once the app's payment service opened (design.md). One row
-- per app, replaced whole when the keys change; a [baidu.app] in the config
-- with the same deal_id wins over a learned one.
CREATE TABLE app_keys (
    app_id              TEXT PRIMARY KEY,
    deal_id             TEXT NOT NULL,
    pm_app_key          TEXT NOT NULL,
    platform_public_key TEXT NOT NULL,
    learned_at          TEXT NOT NULL
);
CREATE INDEX app_keys_deal ON app_keys (deal_id);

-- Where each TP app stands in onboarding, in one select: whether it is
-- authorised (its latest authorisation push), its token's expiry, the
-- latest audit states the platform answered (payment account, develop
-- config, payment service: from the answers kept in query_results), and
-- the deal id and time its keys were learned.
CREATE VIEW tp_apps AS
WITH apps(app_id) AS (
    SELECT app FROM events WHERE provider = 'baidu.tp' AND app IS NOT NULL
    UNION SELECT app FROM tokens WHERE app <> 'tp'
    UNION SELECT app_id FROM app_keys),
audits AS (
    SELECT j.app, j.kind, r.id,
           CASE WHEN json_valid(CAST(r.body AS TEXT))
                THEN json_extract(CAST(r.body AS TEXT), '$.data.status') END AS status
    FROM query_results r JOIN jobs j ON j.id = r.job_id
    WHERE r.outcome = 'done' AND j.kind IN ('baidu.account_audit',
          'baidu.develop_config_audit', 'baidu.pay_service_audit')),
latest AS (
    SELECT app, kind, status FROM audits a
    WHERE id = (SELECT max(id) FROM audits b WHERE b.app = a.app AND b.kind = a.kind))
SELECT a.app_id,
       (SELECT CASE status WHEN 'UNAUTHORIZED' THEN 0 ELSE 1 END FROM events
        WHERE provider = 'baidu.tp' AND app = a.app_id AND verified = 1
          AND status IN ('AUTHORIZED', 'UPDATE_AUTHORIZED', 'UNAUTHORIZED')
        ORDER BY id DESC LIMIT 1) AS authorized,
       (SELECT expires_at FROM tokens WHERE app = a.app_id) AS token_expires_at,
       (SELECT CASE CAST(status AS INTEGER) WHEN 0 THEN 'initial' WHEN 1 THEN 'editing'
               WHEN 2 THEN 'submitted' WHEN 3 THEN 'rejected' WHEN 4 THEN 'approved'
               WHEN 5 THEN 'agreement id filled' ELSE status END
        FROM latest WHERE app = a.app_id AND kind = 'baidu.account_audit') AS account_audit,
       (SELECT CASE CAST(status AS INTEGER) WHEN 0 THEN 'new' WHEN 1 THEN 'in review'
               WHEN 2 THEN 'approved' WHEN 3 THEN 'rejected' ELSE status END
        FROM latest WHERE app = a.app_id AND kind = 'baidu.develop_config_audit')
           AS develop_config_audit,
       (SELECT CASE CAST(status AS INTEGER) WHEN 0 THEN 'new' WHEN 1 THEN 'in review'
               WHEN 2 THEN 'approved' WHEN 3 THEN 'rejected' ELSE status END
        FROM latest WHERE app = a.app_id AND kind = 'baidu.pay_service_audit')
           AS pay_service_audit,
       (SELECT deal_id FROM app_keys WHERE app_id = a.app_id) AS deal_id,
       (SELECT learned_at FROM app_keys WHERE app_id = a.app_id) AS keys_learned_at
FROM apps a;
