plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "dev.keraskd.sample"
    compileSdk = 35
    defaultConfig {
        applicationId = "dev.keraskd.sample"
        minSdk = 23
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
    }
    // .tflite files must stay uncompressed so they can be memory-mapped from the APK.
    androidResources { noCompress += "tflite" }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions { jvmTarget = "17" }
}

dependencies {
    // LiteRT runtime (the successor of the TensorFlow Lite runtime; same org.tensorflow.lite API).
    implementation("com.google.ai.edge.litert:litert:1.4.1")
}
