// pgjdbc's DatabaseMetaData against Eddy, what DBeaver, DataGrip and IntelliJ call to list and
// describe streams; run by tests/it/clients.rs (compiled there with javac) with the server's
// port. Prints one line per fact; the Rust test compares them.

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.Properties;

public class Metadata {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/eddy";
        Properties props = new Properties();
        props.setProperty("user", "eddy");
        props.setProperty("sslmode", "disable");
        props.setProperty("connectTimeout", "10");
        try (Connection conn = DriverManager.getConnection(url, props)) {
            try (Statement st = conn.createStatement()) {
                st.execute("CREATE STREAM clicks (user_id VARCHAR KEY, n INT) WITH (partitions = 2)");
                st.execute("CREATE TABLE users (id VARCHAR PRIMARY KEY, name VARCHAR)");
            }
            DatabaseMetaData md = conn.getMetaData();
            try (ResultSet rs = md.getSchemas()) {
                while (rs.next()) {
                    System.out.println("schema " + rs.getString("TABLE_SCHEM"));
                }
            }
            try (ResultSet rs = md.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (rs.next()) {
                    System.out.println("table " + rs.getString("TABLE_NAME") + " "
                        + rs.getString("TABLE_TYPE") + " " + rs.getString("REMARKS"));
                }
            }
            try (ResultSet rs = md.getColumns(null, "public", "clicks", "%")) {
                while (rs.next()) {
                    System.out.println("column " + rs.getString("COLUMN_NAME") + " "
                        + rs.getString("TYPE_NAME") + " " + rs.getInt("ORDINAL_POSITION") + " "
                        + rs.getString("IS_NULLABLE") + " " + rs.getString("REMARKS"));
                }
            }
            try (ResultSet rs = md.getPrimaryKeys(null, "public", "users")) {
                while (rs.next()) {
                    System.out.println("pk " + rs.getString("COLUMN_NAME") + " "
                        + rs.getInt("KEY_SEQ") + " " + rs.getString("PK_NAME"));
                }
            }
            try (ResultSet rs = md.getPrimaryKeys(null, "public", "clicks")) {
                while (rs.next()) {
                    System.out.println("pk " + rs.getString("COLUMN_NAME"));
                }
            }
        }
        System.out.println("ok");
    }
}
