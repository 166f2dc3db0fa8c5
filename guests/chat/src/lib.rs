use lodge_sdk::Object;
struct C;
impl Object for C { fn activate() -> Self { C } }
lodge_sdk::export!(C);
