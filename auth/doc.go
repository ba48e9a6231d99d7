// Package auth reads Mosquitto's password_file and acl_file formats and answers
// the two questions the broker asks: is this password right for this user, and
// may this client publish to, receive from, or subscribe to this topic.
//
// Both loaded types are immutable, so a reload builds a new value and swaps it
// in; if the new file is broken, Load returns an error naming file:line and the
// caller keeps the old value. A *LineError carries the file and line.
//
// # Password file
//
// One "user:hash" per line; blank lines and lines whose first non-blank
// character is '#' are ignored; blanks around the user name and the hash are
// trimmed, as Mosquitto does. Hash formats:
//
//   - "$7$<iterations>$<salt>$<hash>": PBKDF2-HMAC-SHA512, 64-byte result,
//     standard base64 with padding. mosquitto_passwd 2.0 writes 101 iterations
//     and a 12-byte salt; 2.1 writes 1,000 iterations and a 64-byte salt.
//     Salts of 8 to 64 bytes are accepted. HashPassword writes this format.
//   - "$6$<salt>$<hash>": Mosquitto's old format, one SHA-512 over the
//     password followed by the salt. It is not crypt(3)'s "$6$", which is
//     refused with a message saying so.
//   - "$2a$", "$2b$", "$2y$": bcrypt (htpasswd -B, crypt(3), x/crypto/bcrypt).
//     As everywhere, bcrypt reads only the first 72 bytes of a password.
//   - "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>": RFC 5803's
//     form of what a SCRAM-SHA-256 server keeps (RFC 5802, RFC 7677), written
//     by HashSCRAM. Passwords.SCRAM hands it to MQTT 5's SCRAM exchange
//     (package enhauth), and Check derives the keys from a plain password and
//     compares, so one entry serves both. The password is SASLprep-ed (RFC
//     4013) first, as SCRAM clients do. For users without such an entry SCRAM
//     returns a decoy whose salt is the same at every call until the file is
//     reloaded: a reload changes the decoys' salts and not the real users'.
//
// Where Mosquitto logs a bad line and drops that user, LoadPasswords refuses
// the whole file, so a reload never silently locks a user out. It also refuses
// lines without ':' (Mosquitto skips them), a user listed twice, and
// "$argon2id$" hashes (written by Mosquitto 2.1 builds with argon2; not
// supported here, re-set those users with `holdfast passwd`).
//
// Check costs the same for an unknown user as for a wrong password: it runs a
// dummy verification of the kind and cost most common in the file. In a file
// that mixes kinds or costs, a user whose hash differs from the most common one
// can still be told apart by timing; Warnings says when that is the case.
//
// # ACL file
//
// Lines, as in Mosquitto's acl_file:
//
//	topic [read|write|readwrite|deny] <filter>    (no access word: readwrite)
//	pattern [read|write|readwrite|deny] <filter>  (%c = client id, %u = username)
//	user <username>
//
// The filter is the rest of the line, so it may contain spaces when an access
// word is given. topic lines before the first user line apply to clients that
// sent no username; after "user NAME" they apply to that user (two sections for
// one name are merged). pattern lines apply to every client wherever they are
// in the file; a pattern using %u never applies to a client without a username.
// A client that no rule grants the access is denied.
//
// Decisions, for a topic name or a subscription filter:
//
//  1. A deny rule of the client's section, or a deny pattern, that matches
//     refuses (deny overrides every grant, whatever the order in the file).
//  2. Otherwise a read/write/readwrite rule of the client's section or a pattern
//     that matches and grants the access allows.
//  3. Otherwise the client is refused.
//
// Matching uses package router: '+' and '#' as in subscriptions, and a filter
// whose first level is a wildcard does not match a topic beginning with '$'.
//
// CanSubscribe decides about a subscription filter: a read rule must cover it,
// that is, match every topic the subscription could match ("sensors/#" covers
// "sensors/+/temp"; "sensors/+/temp" does not cover "sensors/#"), and no deny
// rule may cover it. A deny rule that only overlaps the subscription does not
// refuse it; CanReceive refuses those messages one by one at delivery.
//
// # Differences from Mosquitto 2.0, all on the side of refusing
//
//   - Mosquitto's acl_file grants every SUBSCRIBE and filters only at
//     delivery. CanSubscribe refuses a filter no single read rule covers, so the
//     broker can answer 0x80 in SUBACK; CanReceive is still checked at delivery.
//   - Mosquitto checks the user's section (denies first, then grants) before the
//     patterns, so a user-section grant wins over a deny pattern. Here a deny
//     anywhere wins, as the Mosquitto documentation's "any deny topics are
//     handled before topics that grant" reads.
//   - A %c or %u must stand for one whole topic level or part of one: when the
//     client id or username holds '/', '+' or '#' (or begins with '$' where it
//     would begin the topic), the pattern grants nothing and, if it is a deny
//     pattern, refuses everything. Mosquitto refuses clients with '+' or '#' in
//     their id or username once any pattern exists, but substitutes '/' freely,
//     which lets client "a/b" into the tree of client "a".
//   - "topic read" (an access word with no filter) is an error; Mosquitto reads
//     it as readwrite access to a topic named "read".
//   - Separators may be tabs as well as spaces, a line may start with blanks, and
//     a leading UTF-8 byte order mark is skipped; Mosquitto refuses such files.
package auth
