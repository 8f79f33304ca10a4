-- Campaign ids in the order campaigns are created (UUID version 7, RFC 9562), for passpush's campaigns.
--
-- The recipient table's primary key leads with campaign_id. With random ids (gen_random_uuid) a new
-- campaign's rows are inserted somewhere in the middle of that index, where every full page is split
-- in half: its part of the index ends up twice the size it needs (1.8x measured on 300k rows, in
-- bench/RESULTS.md) and each row descends the tree from the root. With ids that grow with time, a new
-- campaign's rows, written in member order, go to the right edge of the index: pages are split where
-- the last one ends, left full, and PostgreSQL's right-edge fast path skips the descent.
--
-- push_campaigns.id keeps its specified default (gen_random_uuid()), which other writers of the table
-- may rely on; passpush.campaigns.create_campaign asks for this function instead. Campaigns created
-- with random ids before this migration stay where they are; while their recipients are kept, most
-- of them sort after the new ids, and new campaigns get the right edge once those are gone.
--
-- Layout: 48 bits of Unix time in milliseconds (the database's clock, so every writer shares one
-- clock), the version (7), the variant (binary 10) and 74 random bits from gen_random_uuid().
CREATE OR REPLACE FUNCTION passpush_new_campaign_id() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        -- bits 52-55 of a v4 id are its version, 0100: setting bits 52 and 53 makes it 0111
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;
