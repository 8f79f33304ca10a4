-- The recipient -> campaign reference, checked once per statement instead of once per row.
-- A row-level foreign key runs one look-up (and lock) of push_campaigns per inserted recipient:
-- 3.3 s of a 17 s resolution of a million members (bench/RESULTS.md). The same three guarantees,
-- kept by triggers that work set-wise:
--   * every inserted recipient names an existing campaign: checked once per INSERT statement, over
--     its distinct campaign ids, which are locked FOR KEY SHARE as a foreign key locks them, so a
--     concurrent DELETE of the campaign waits for the inserting transaction (or makes it fail);
--   * a recipient's campaign_id never changes;
--   * deleting a campaign deletes its recipients (was ON DELETE CASCADE), truncating campaigns truncates them.
ALTER TABLE push_campaign_recipients DROP CONSTRAINT IF EXISTS push_campaign_recipients_campaign_id_fkey;

CREATE OR REPLACE FUNCTION passpush_check_recipient_campaigns() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    wanted uuid;
BEGIN
    FOR wanted IN SELECT DISTINCT campaign_id FROM new_recipients LOOP
        -- In READ COMMITTED a row deleted by a transaction we waited for is not returned: NOT FOUND.
        PERFORM 1 FROM push_campaigns WHERE id = wanted FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE foreign_key_violation USING
                MESSAGE = format('push_campaign_recipients: campaign %s does not exist', wanted),
                HINT = 'create the campaign in push_campaigns first';
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS push_campaign_recipients_campaign_exists ON push_campaign_recipients;
CREATE TRIGGER push_campaign_recipients_campaign_exists
    AFTER INSERT ON push_campaign_recipients
    REFERENCING NEW TABLE AS new_recipients
    FOR EACH STATEMENT EXECUTE FUNCTION passpush_check_recipient_campaigns();

CREATE OR REPLACE FUNCTION passpush_refuse_campaign_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE foreign_key_violation USING
        MESSAGE = format('push_campaign_recipients: member %s cannot move from campaign %s to %s',
                         OLD.member_id, OLD.campaign_id, NEW.campaign_id);
END
$$;

-- A row trigger with a column list fires only for UPDATEs that set campaign_id: the sender's don't.
DROP TRIGGER IF EXISTS push_campaign_recipients_campaign_fixed ON push_campaign_recipients;
CREATE TRIGGER push_campaign_recipients_campaign_fixed
    BEFORE UPDATE OF campaign_id ON push_campaign_recipients
    FOR EACH ROW WHEN (NEW.campaign_id IS DISTINCT FROM OLD.campaign_id)
    EXECUTE FUNCTION passpush_refuse_campaign_change();

CREATE OR REPLACE FUNCTION passpush_delete_campaign_recipients() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM push_campaign_recipients WHERE campaign_id = OLD.id;
    RETURN OLD;
END
$$;

DROP TRIGGER IF EXISTS push_campaigns_delete_recipients ON push_campaigns;
CREATE TRIGGER push_campaigns_delete_recipients
    AFTER DELETE ON push_campaigns
    FOR EACH ROW EXECUTE FUNCTION passpush_delete_campaign_recipients();

CREATE OR REPLACE FUNCTION passpush_truncate_campaign_recipients() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE push_campaign_recipients;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS push_campaigns_truncate_recipients ON push_campaigns;
CREATE TRIGGER push_campaigns_truncate_recipients
    AFTER TRUNCATE ON push_campaigns
    FOR EACH STATEMENT EXECUTE FUNCTION passpush_truncate_campaign_recipients();
