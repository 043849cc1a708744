-- 0003: hosts nothing may start on before `until`: a command salve stopped waiting for
-- (timeout, lost session) or was running when it crashed may still run there until the
-- target's `timeout` backstop ends it. Kept in the store so a second crash (a crash loop)
-- does not forget it. Rows past `until` are deleted when the next hold is written.
CREATE TABLE host_holds (
    host  TEXT NOT NULL PRIMARY KEY,
    until TEXT NOT NULL,
    why   TEXT NOT NULL
) STRICT;
