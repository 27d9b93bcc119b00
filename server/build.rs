//! `sqlx::migrate!` embeds the migration files at compile time, but cargo does
//! not know it reads them: a new migration must trigger a rebuild.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
