-- Memory: the repository index (code chunks, full text and vectors), the traces of finished
-- Mechanic jobs, and the lessons people taught. See app/memory/.

-- Which commit each repository was indexed at, and how that went.
CREATE TABLE memory_repositories (
    repository   text PRIMARY KEY,
    commit       text,
    status       text        NOT NULL DEFAULT 'new'
                 CHECK (status IN ('new', 'indexing', 'ready', 'failed')),
    files        integer     NOT NULL DEFAULT 0,
    chunks       integer     NOT NULL DEFAULT 0,
    problem      text,
    indexed_at   timestamptz
);

-- One row per indexed file: its blob id says whether it changed since (not re-read if not).
CREATE TABLE memory_files (
    repository text    NOT NULL,
    path       text    NOT NULL,
    blob       text    NOT NULL,
    commit     text    NOT NULL,
    PRIMARY KEY (repository, path)
);

-- A chunk follows the code's structure: a function, a class or method, a markdown section,
-- a module's top, a block of a config file.
CREATE TABLE memory_chunks (
    id           bigserial PRIMARY KEY,
    repository   text     NOT NULL,
    path         text     NOT NULL,
    start_line   integer  NOT NULL CHECK (start_line >= 1),
    end_line     integer  NOT NULL CHECK (end_line >= start_line),
    kind         text     NOT NULL,
    symbol       text     NOT NULL,
    commit       text     NOT NULL,
    content_hash text     NOT NULL,
    content      text     NOT NULL,
    search       tsvector NOT NULL,
    FOREIGN KEY (repository, path) REFERENCES memory_files ON DELETE CASCADE
);
CREATE INDEX memory_chunks_search_idx ON memory_chunks USING gin (search);
CREATE INDEX memory_chunks_file_idx ON memory_chunks (repository, path);
CREATE INDEX memory_chunks_hash_idx ON memory_chunks (content_hash);

-- How many chunks of a repository hold each word: full-text ranking weighs rare words up.
CREATE TABLE memory_terms (
    repository text    NOT NULL,
    lexeme     text    NOT NULL,
    docs       integer NOT NULL,
    PRIMARY KEY (repository, lexeme)
);

-- Embeddings, by model and content hash: an unchanged chunk (or trace) is never embedded
-- twice. The column takes any dimension; the HNSW index for the model's dimension is made
-- when its first vector arrives (an expression index over `embedding::vector(n)`).
CREATE TABLE memory_vectors (
    model        text    NOT NULL,
    content_hash text    NOT NULL,
    dims         integer NOT NULL,
    embedding    vector  NOT NULL,
    PRIMARY KEY (model, content_hash)
);

-- Every finished Mechanic job: what was asked, planned, changed, and how it ended.
CREATE TABLE job_traces (
    job_id         text PRIMARY KEY REFERENCES jobs (id),
    repository     text        NOT NULL,
    request        text        NOT NULL,
    plan           jsonb,
    files          text[]      NOT NULL DEFAULT '{}',
    diff_summary   text        NOT NULL DEFAULT '',
    outcome        text        NOT NULL,
    rounds         integer     NOT NULL DEFAULT 0,
    problems       text        NOT NULL DEFAULT '',
    deployed_at    timestamptz,
    rolled_back_at timestamptz,
    rollback_reason text,
    content_hash   text        NOT NULL,
    search         tsvector    NOT NULL,
    finished_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_traces_search_idx ON job_traces USING gin (search);

-- What people taught: tied to paths (fnmatch patterns; none: everywhere), retired, never
-- deleted.
CREATE TABLE lessons (
    id          bigserial PRIMARY KEY,
    repository  text        NOT NULL,
    text        text        NOT NULL CHECK (length(text) BETWEEN 1 AND 1000),
    paths       text[]      NOT NULL DEFAULT '{}',
    source      text        NOT NULL CHECK (source IN ('command', 'dispute', 'abort', 'rollback')),
    subject     text,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz,
    retired_by  text
);
CREATE INDEX lessons_active_idx ON lessons (repository) WHERE retired_at IS NULL;
CREATE UNIQUE INDEX lessons_once_per_subject ON lessons (source, subject) WHERE subject IS NOT NULL;
