/* migrations.h: the schema migrations of deploy/postgres/migrations/,
 * built into pkid (//server/fleet:migrations_c), oldest first. Each file is
 * NNNN_name.sql; NNNN is its version. */
#ifndef PKID_SERVER_FLEET_MIGRATIONS_H
#define PKID_SERVER_FLEET_MIGRATIONS_H

#include <stddef.h>

typedef struct pkid_migration {
  int version;
  const char *name; /* the file's name */
  const char *sql;
} pkid_migration;

extern const pkid_migration pkid_migrations[];
extern const size_t pkid_num_migrations;

#endif /* PKID_SERVER_FLEET_MIGRATIONS_H */
