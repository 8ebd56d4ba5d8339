plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "dev.keraskd.sample"
    compileSdk = 36
    defaultConfig {
        applicationId = "dev.keraskd.sample"
        minSdk = 23
        targetSdk = 36
        versionCode = 1
        versionName = "0.1.0"
    }
    // .tflite files must stay uncompressed so they can be memory-mapped from the APK.
    androidResources { noCompress += "tflite" }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
}

kotlin { compilerOptions { jvmTarget.set(org.jetbrains.kotlin.gradle.dsl.JvmTarget.JVM_17) } }

dependencies {
    // LiteRT runtime: the CompiledModel API (com.google.ai.edge.litert.CompiledModel).
    implementation("com.google.ai.edge.litert:litert:2.3.0")
}
