-- Sign in with Microsoft may prove Portico to Microsoft with a certificate instead of a
-- client secret: Portico generates the key pair, the admin uploads the certificate to the
-- Azure app, and the code exchange sends a client assertion signed with the private key.
-- `client_secret` keeps today's meaning: a client secret, or none (a public client).
ALTER TABLE microsoft_sign_in ADD COLUMN auth_method TEXT NOT NULL DEFAULT 'client_secret'
    CHECK (auth_method IN ('client_secret', 'certificate'));

-- The sign-in app's certificates: the `current` one signs the client assertions; a `next`
-- one, made by "Renew certificate", waits until the admin has uploaded it to Azure and
-- switches. The certificate is public; its private key is sealed (see crypto.rs).
CREATE TABLE microsoft_sign_in_certificates (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL REFERENCES microsoft_sign_in (tenant_id) ON DELETE CASCADE,
    slot                TEXT NOT NULL CHECK (slot IN ('current', 'next')),
    private_key_sealed  TEXT NOT NULL,
    certificate_pem     TEXT NOT NULL,
    -- SHA-1 of the certificate in hex capitals: the Thumbprint the Azure portal lists.
    thumbprint          TEXT NOT NULL,
    not_before          BIGINT NOT NULL,
    not_after           BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    UNIQUE (tenant_id, slot)
);
